"""Decoding untrusted bytes: every mode becomes upright RGB; bad input is a clear error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bench.harness import skimage_photo
from service.core.images import ImageLimits, decode_image
from service.errors import InvalidArgument, PayloadTooLarge

LIMITS = ImageLimits(max_bytes=1 << 24, max_pixels=50_000_000)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _cat() -> Image.Image:
    return Image.open(io.BytesIO(skimage_photo("chelsea.png"))).convert("RGB")


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"),
     ("RGB", "WEBP"), ("RGB", "BMP"), ("P", "GIF"), ("RGB", "TIFF"), ("I;16", "PNG")],
)
def test_every_mode_and_format_decodes_to_rgb(mode: str, fmt: str) -> None:
    """A real photo saved in each mode and format decodes to an RGB picture of the same size."""
    cat = _cat()
    if mode == "I;16":
        grey = np.asarray(cat.convert("L"), dtype=np.uint16) * 257
        source = Image.fromarray(grey)
    else:
        source = cat.convert(mode)
    decoded = decode_image(_encode(source, fmt), LIMITS)
    assert decoded.mode == "RGB" and decoded.size == cat.size


def test_sixteen_bit_is_rescaled_not_clipped() -> None:
    """16-bit samples map to 0..255 by scale; Pillow's plain convert would clip them to white."""
    cat = _cat().convert("L")
    wide = Image.fromarray(np.asarray(cat, dtype=np.uint16) * 257)
    decoded = np.asarray(decode_image(_encode(wide, "PNG"), LIMITS))[..., 0]
    assert np.abs(decoded.astype(int) - np.asarray(cat, dtype=int)).max() <= 1


def test_transparency_is_composited_onto_white() -> None:
    """Fully transparent pixels become white rather than whatever colour they stored."""
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    decoded = decode_image(_encode(image, "PNG"), LIMITS)
    assert decoded.getpixel((3, 3)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    """A JPEG stored sideways with EXIF orientation 6 comes out upright."""
    cat = _cat()  # 451 wide, 300 high
    sideways = cat.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = decode_image(_encode(sideways, "JPEG", exif=exif.tobytes()), LIMITS)
    assert decoded.size == cat.size


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buffer.getvalue(), LIMITS).getpixel((0, 0)) == (255, 0, 0)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a canvas but carries almost no data (a bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"definitely not an image", "could not be decoded"),
        (_png_header_only(100_000, 100_000), "pixels"),
        (_png_header_only(8000, 8000), "pixels"),
    ],
)
def test_bad_input_is_invalid_argument(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        decode_image(data, LIMITS)


def test_truncated_jpeg_is_invalid_argument() -> None:
    jpeg = _encode(_cat(), "JPEG")
    with pytest.raises(InvalidArgument, match="truncated or corrupt"):
        decode_image(jpeg[: len(jpeg) // 2], LIMITS)


def test_file_above_byte_limit_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge, match="above the limit of 100 bytes"):
        decode_image(b"x" * 101, ImageLimits(max_bytes=100, max_pixels=10))


def test_pixel_limit_is_checked_before_decoding() -> None:
    """The pixel limit rejects a real photo by its header size alone."""
    with pytest.raises(InvalidArgument, match="451x300"):
        decode_image(skimage_photo("chelsea.png"), ImageLimits(max_bytes=1 << 24, max_pixels=451 * 300 - 1))


def test_multi_page_tiff_uses_first_page() -> None:
    pages = [Image.new("RGB", (16, 16), colour) for colour in ((0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    assert decode_image(buffer.getvalue(), LIMITS).getpixel((0, 0)) == (0, 255, 0)
