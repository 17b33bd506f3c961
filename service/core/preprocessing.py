"""Turning an RGB picture into the normalised array a network takes."""

from __future__ import annotations

from dataclasses import dataclass

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

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Return a float32 CHW array; equals torchvision's ImageClassification on PIL input."""
        # torchvision's own PIL resize and crop, so sizes and rounding match
        # the reference transform exactly; the tensor part is done in NumPy so
        # no torch (OpenMP) work happens on the decode threads.
        image = tvf.resize(image, [self.resize_size], interpolation=self.interpolation, antialias=True)
        image = tvf.center_crop(image, [self.crop_size])
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
        pixels = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))
