"""The core's preprocessing matches torchvision's published transforms, to one uint8 step."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.models import ResNet18_Weights
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf

from bench.harness import real_photos
from service.core.architectures import EFFICIENTNET_LITE0, RESNET18
from service.core.images import ImageLimits, decode_image
from service.core.model_options import model_specs
from service.core.models import load_model
from service.core.preprocessing import Preprocessing

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
    interpolation = InterpolationMode(pre.interpolation)
    image = tvf.center_crop(tvf.resize(image, [pre.resize_size], interpolation=interpolation, antialias=True), [pre.crop_size])
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
    mean = np.asarray(pre.mean, np.float32)[:, None, None]
    std = np.asarray(pre.std, np.float32)[:, None, None]
    return (pixels - mean) / std


def test_parameters_are_torchvisions() -> None:
    """Resize 256, crop 224, ImageNet mean/std and bilinear: the weights' own transform, written out (no torchvision at serve time)."""
    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    p = RESNET18.preprocessing
    assert [p.resize_size] == list(transform.resize_size) and [p.crop_size] == list(transform.crop_size)
    assert list(p.mean) == list(transform.mean) and list(p.std) == list(transform.std)
    assert InterpolationMode(p.interpolation) == transform.interpolation and transform.antialias


def test_imagenet_labels_are_torchvisions() -> None:
    """The labels file served without torchvision holds torchvision's 1000 categories in order."""
    from service.core.architectures import imagenet_labels

    assert imagenet_labels() == tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_round_trips_through_a_manifest() -> None:
    """An exported model's manifest stores the preprocessing; reading it back gives the same transform."""
    for architecture in (RESNET18, EFFICIENTNET_LITE0):
        assert Preprocessing.from_json(architecture.preprocessing.to_json()) == architecture.preprocessing


@pytest.mark.parametrize(
    "fields",
    [{"crop_size": 300}, {"interpolation": "cubic-ish"}, {"mean": [0.5, 0.5]}, {"std": [0.2, 0.0, 0.2]}, {"extra": 1}],
)
def test_refuses_a_bad_manifest_entry(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Preprocessing.from_json({**RESNET18.preprocessing.to_json(), **fields})
