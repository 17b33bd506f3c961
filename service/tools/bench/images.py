"""The benchmark's images: real photos shipped in scikit-image and scikit-learn, as ~500x375 JPEGs."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps

SKIMAGE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
SIZE = (500, 375)  # a typical web photo; every photo is cropped to 4:3 first, so none is stretched


def photo_files() -> dict[str, bytes]:
    """The original files; scikit-image and scikit-learn are the project's test extras."""
    try:
        import skimage
        import sklearn.datasets
    except ImportError as error:
        raise RuntimeError(
            f"the benchmark photos ship in scikit-image and scikit-learn ({error.name} is missing): "
            "pip install -e '.[dev]'"
        ) from None
    skimage_dir = Path(skimage.__file__).parent / "data"
    sklearn_dir = Path(sklearn.datasets.__file__).parent / "images"
    files = {name: (skimage_dir / name).read_bytes() for name in SKIMAGE_PHOTOS}
    files.update({name: (sklearn_dir / name).read_bytes() for name in SKLEARN_PHOTOS})
    return files


def reencode(data: bytes, size: tuple[int, int] = SIZE, quality: int = 90) -> bytes:
    """Centre-crop to the aspect ratio of ``size``, resize, and encode as a baseline RGB JPEG."""
    with Image.open(io.BytesIO(data)) as image:
        picture = ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def benchmark_images() -> dict[str, bytes]:
    """Six real photos as ~500x375 JPEGs (about 30-80 KB each), keyed by a stem."""
    return {name.rsplit(".", 1)[0]: reencode(data) for name, data in photo_files().items()}
