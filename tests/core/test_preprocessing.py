"""The core's preprocessing matches torchvision's published transforms, to one uint8 step."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.models import ResNet18_Weights
from torchvision.transforms import functional as tvf

from service.core.architectures import RESNET18
from service.core.catalog import model_specs
from service.core.images import ImageLimits, decode_image
from service.core.models import load_model
from service.core.preprocessing import Preprocessing
from tests.support import real_photos

# One uint8 step after normalisation: the most a pixel may differ from
# torchvision's, since we resample only the cropped region (float rounding of
# the filter centres can move a value across a rounding boundary).
ONE_STEP = 1 / (255 * min(RESNET18.preprocessing.std)) + 1e-5


def _assert_close_to_torchvision(image: Image.Image) -> None:
    reference = ResNet18_Weights.IMAGENET1K_V1.transforms()(image).numpy()
    ours = RESNET18.preprocessing(image)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    difference = np.abs(ours - reference)
    assert difference.max() <= ONE_STEP, f"{image.size}: differs by {difference.max():.4f}"
    assert (difference > 1e-5).mean() <= 0.01, f"{image.size}: {(difference > 1e-5).mean():.2%} of values differ"


@pytest.mark.parametrize("name", sorted(real_photos()))
def test_matches_torchvision_transform_on_real_photos(name: str, photos: dict[str, bytes]) -> None:
    """Real photos come out as torchvision's ImageClassification gives them, to one uint8 step."""
    _assert_close_to_torchvision(Image.open(io.BytesIO(photos[name])).convert("RGB"))


@pytest.mark.parametrize("size", [(100, 80), (224, 224), (257, 1000), (2000, 300), (333, 333), (640, 427), (1, 9)])
def test_matches_torchvision_transform_at_any_geometry(size: tuple[int, int], photos: dict[str, bytes]) -> None:
    """Up- and downscaling, portrait, panorama and odd sizes: same crop as torchvision, to one uint8 step."""
    photo = Image.open(io.BytesIO(photos["astronaut.png"])).convert("RGB")
    _assert_close_to_torchvision(photo.resize(size, Image.Resampling.BICUBIC))


def test_top1_is_unchanged_against_resize_then_crop_on_photo_variants() -> None:
    """With the bundled pretrained model, 240 large photo variants get torchvision's top-1 class."""
    from bench.jpeg_draft_agreement import large_jpeg_variants

    (spec,) = model_specs(["efficientnet_lite0"], resnet18_weights=Path("absent"))
    model = load_model(spec)
    pre, limits = model.preprocessing, ImageLimits(1 << 26, 10**8)
    images = [decode_image(f, limits, 2 * pre.resize_size) for f in large_jpeg_variants(per_photo=40)]
    ours = np.stack([pre(image) for image in images])
    reference = np.stack([_resize_then_crop(pre, image) for image in images])
    same = model.backend.predict_proba(ours).argmax(1) == model.backend.predict_proba(reference).argmax(1)
    print(f"{len(images)} variants, top-1 agreement {same.mean():.1%}")
    assert len(images) == 240 and same.mean() >= 0.99


def _resize_then_crop(pre: Preprocessing, image: Image.Image) -> np.ndarray:
    """torchvision's resize and centre crop of the whole image, then the same normalisation."""
    image = tvf.center_crop(
        tvf.resize(image, [pre.resize_size], interpolation=pre.interpolation, antialias=True), [pre.crop_size]
    )
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
    mean = np.asarray(pre.mean, np.float32)[:, None, None]
    std = np.asarray(pre.std, np.float32)[:, None, None]
    return (pixels - mean) / std


def test_parameters_are_read_from_torchvision() -> None:
    """Resize 256, crop 224 and ImageNet mean/std come from the weights' own transform."""
    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    p = RESNET18.preprocessing
    assert (p.resize_size, p.crop_size) == (256, 224)
    assert list(p.mean) == list(transform.mean) and list(p.std) == list(transform.std)
