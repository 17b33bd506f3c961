"""Turning an RGB picture into the normalised array a network takes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side, centre-crop, scale to [0, 1], normalise per channel."""

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: InterpolationMode = InterpolationMode.BILINEAR
    # uint8 value -> normalised float32, per channel: the same float32
    # arithmetic as (v / 255 - mean) / std, done once per value instead of once
    # per pixel (0.7 -> 0.3 ms an image here, bit-identical).
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
        mean = np.asarray(self.mean, np.float32)[:, None]
        std = np.asarray(self.std, np.float32)[:, None]
        object.__setattr__(self, "_table", np.ascontiguousarray((values - mean) / std, dtype=np.float32))

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Return a float32 CHW array; equals torchvision's ImageClassification on PIL input."""
        # torchvision's own PIL resize and crop, so sizes and rounding match
        # the reference transform exactly; the rest is a table lookup in NumPy
        # (no torch, so no OpenMP work on the decode threads).
        image = tvf.resize(image, [self.resize_size], interpolation=self.interpolation, antialias=True)
        image = tvf.center_crop(image, [self.crop_size])
        pixels = np.asarray(image).transpose(2, 0, 1)
        out = np.empty(pixels.shape, dtype=np.float32)
        for channel in range(3):
            np.take(self._table[channel], pixels[channel], out=out[channel])
        return out
