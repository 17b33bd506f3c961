"""The core's preprocessing equals torchvision's published transform for ResNet18."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights

from service.core.architectures import RESNET18
from tests.support import real_photos


@pytest.mark.parametrize("name", sorted(real_photos()))
def test_matches_torchvision_transform_on_real_photos(name: str, photos: dict[str, bytes]) -> None:
    """NumPy preprocessing gives torchvision's ImageClassification output to float32 rounding."""
    image = Image.open(io.BytesIO(photos[name])).convert("RGB")
    reference = ResNet18_Weights.IMAGENET1K_V1.transforms()(image)
    ours = RESNET18.preprocessing(image)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    torch.testing.assert_close(torch.from_numpy(ours), reference, rtol=0, atol=1e-6)


def test_parameters_are_read_from_torchvision() -> None:
    """Resize 256, crop 224 and ImageNet mean/std come from the weights' own transform."""
    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    p = RESNET18.preprocessing
    assert (p.resize_size, p.crop_size) == (256, 224)
    assert list(p.mean) == list(transform.mean) and list(p.std) == list(transform.std)
