"""Decoding untrusted image bytes into RGB pictures, within limits."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import InvalidArgument, PayloadTooLarge

# Pillow plugins we accept. Restricting them keeps exotic parsers (EPS runs
# Ghostscript, for one) away from untrusted bytes.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

# Modes whose samples exceed 8 bits: Pillow's convert("RGB") clips them, so
# they are rescaled to 0..255 first.
_WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


@dataclass(frozen=True)
class ImageLimits:
    """Limits applied to every image before it is decoded."""

    max_bytes: int
    max_pixels: int


def decode_image(data: bytes, limits: ImageLimits, draft_size: int | None = None) -> Image.Image:
    """Decode the first frame of an encoded image into an upright RGB picture.

    With ``draft_size``, a JPEG much larger than needed is decoded at a reduced
    scale (1/2, 1/4 or 1/8, in the DCT domain: far less work) that still
    leaves both sides at least ``draft_size`` pixels.

    Raises InvalidArgument for empty, unknown, corrupt or oversized-in-pixels
    images and PayloadTooLarge for files above ``limits.max_bytes``.
    """
    if not data:
        raise InvalidArgument("image is empty")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"image is {len(data)} bytes, above the limit of {limits.max_bytes} bytes"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidArgument(
            "image could not be decoded: not a JPEG, PNG, WebP, BMP, GIF or TIFF file"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidArgument(
            f"image has too many pixels (limit {limits.max_pixels})"
        ) from None
    except Exception as exc:  # Pillow raises many types for malformed headers.
        raise InvalidArgument(f"image header is corrupt: {_describe(exc)}") from None
    width, height = image.size
    # Checked from the header, before any pixel is decoded: a tiny file can
    # declare a huge canvas (a decompression bomb).
    if width * height > limits.max_pixels:
        raise InvalidArgument(
            f"image is {width}x{height} = {width * height} pixels, "
            f"above the limit of {limits.max_pixels} pixels"
        )
    if width == 0 or height == 0:
        raise InvalidArgument(f"image has no pixels ({width}x{height})")
    try:
        image.seek(0)  # animated GIF / multi-page TIFF: the first frame
        if draft_size is not None and image.format == "JPEG":
            image.draft(image.mode, (draft_size, draft_size))
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except Exception as exc:  # truncated or corrupt pixel data
        raise InvalidArgument(f"image data is truncated or corrupt: {_describe(exc)}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_MODES:
        samples = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or samples.max() > 255 else 255.0
        grey = np.clip(samples * (255.0 / peak), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
