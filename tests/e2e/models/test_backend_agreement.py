"""The default backend (ONNX Runtime fp32) answers as torch fp32 does, on real photos and their variants.

The served default was chosen by speed (bench/results/2cpu-resnet18-onnx-vs-torch/); it
may only be the default while it is the same model: the same top-1 class on at least
99.9 % of the images the tests use, and every probability within PROBABILITY_ATOL of
torch's. Both networks: the bundled pretrained EfficientNet-Lite0 (real, confident
answers) and the tests' random-init ResNet18 (near-uniform answers, the hardest case
for top-1 agreement).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.harness import real_photos
from bench.int8_agreement import evaluation_set
from service.core.images import ImageLimits, decode_image
from service.core.model_options import model_specs
from service.core.models import BackendOptions, LoadedModel, ModelSpec, load_model
from service.settings import Settings
from tests.e2e.models.test_pretrained_accuracy import PHOTOS, VARIANTS

TOP1_AGREEMENT = 0.999
PROBABILITY_ATOL = 1e-5  # the same fp32 arithmetic in another order: rounding only (measured: below 2e-6)
LIMITS = ImageLimits(max_bytes=1 << 26, max_pixels=10**8)


def _images() -> list[bytes]:
    """The photos and variants of the accuracy tests, plus 7 photos x 10 augmented variants."""
    files = list(real_photos().values())
    for load in PHOTOS.values():
        original = load()
        files += [make(original) for make in VARIANTS.values()]
    _, augmented = evaluation_set(per_photo=10, seed=16)
    return files + augmented


def _batches(model: LoadedModel, files: list[bytes], size: int = 8) -> Iterator[np.ndarray]:
    """Preprocessed as the engine does, in batches of the served size."""
    inputs = [model.preprocessing(decode_image(file, LIMITS, 2 * model.preprocessing.resize_size)) for file in files]
    for start in range(0, len(inputs), size):
        yield np.stack(inputs[start:start + size])


def test_the_default_backend_is_onnxruntime_fp32() -> None:
    """What `classify serve` runs when no backend is named."""
    assert Settings().backend == "onnxruntime"


@pytest.mark.parametrize("network", ["efficientnet_lite0", "resnet18"])
def test_onnxruntime_fp32_agrees_with_torch_fp32(network: str, weights: Path, tmp_path: Path) -> None:
    """Same top-1 on >= 99.9 % of real photos and variants; probabilities within PROBABILITY_ATOL."""
    if network == "resnet18":
        spec = ModelSpec("resnet18", "resnet18", weights)
    else:
        (spec,) = model_specs(["efficientnet_lite0"], resnet18_weights=Path("absent"))
    options = BackendOptions(cache_dir=tmp_path, threads=2)
    torch_model = load_model(replace(spec, backend="torch"), options)
    onnx_model = load_model(replace(spec, backend="onnxruntime"), options)
    assert (onnx_model.info.backend, onnx_model.info.precision) == ("onnxruntime", "fp32")
    files = _images()
    same = worst = 0.0
    for batch in _batches(torch_model, files):
        expected, got = torch_model.backend.predict_proba(batch), onnx_model.backend.predict_proba(batch)
        same += float((expected.argmax(1) == got.argmax(1)).sum())
        worst = max(worst, float(np.abs(expected - got).max()))
    agreement = same / len(files)
    print(f"{network}: {len(files)} images, top-1 agreement {agreement:.2%}, largest probability difference {worst:.2e}")
    assert len(files) >= 100
    assert agreement >= TOP1_AGREEMENT, f"{network}: top-1 agreement {agreement:.2%} < {TOP1_AGREEMENT:.1%}"
    assert worst <= PROBABILITY_ATOL, f"{network}: a probability differs by {worst:.2e} > {PROBABILITY_ATOL}"
