"""Backends per model: torch fp32/bf16, ONNX Runtime fp32 (exported, cached) and int8 (quantized)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.harness import random_resnet18_weights, real_photos
from service.core.backends import cpu_has_bf16
from service.core.images import ImageLimits, decode_image
from service.core.models import BackendOptions, ModelSpec, load_model
from service.core.onnx_backend import EXPORT_REVISION
from service.errors import StartupError
from service.settings import Settings
from service.tools.quantize import quantize_model


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    from service.core.architectures import RESNET18

    limits = ImageLimits(1 << 24, 50_000_000)
    return np.stack([RESNET18.preprocessing(decode_image(p, limits)) for p in real_photos().values()])


def test_onnx_fp32_matches_torch_and_is_cached_by_digest(tmp_path: Path, inputs: np.ndarray) -> None:
    weights = random_resnet18_weights(tmp_path, seed=3)
    spec = ModelSpec("r", "resnet18", weights)
    reference = load_model(spec).backend.predict_proba(inputs)
    onnx = load_model(ModelSpec("r", "resnet18", weights, backend="onnxruntime"), BackendOptions(threads=2))
    assert (onnx.info.backend, onnx.info.precision) == ("onnxruntime", "fp32")
    np.testing.assert_allclose(onnx.backend.predict_proba(inputs), reference, atol=1e-5)
    graphs = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert graphs == [f"r-{onnx.info.weights_sha256[:16]}-fp32-x{EXPORT_REVISION}.onnx"]
    other = random_resnet18_weights(tmp_path, seed=4)  # new weights: a new graph, never the stale one
    load_model(ModelSpec("r", "resnet18", other, backend="onnxruntime"))
    assert len(list(tmp_path.glob("*-fp32-x*.onnx"))) == 2


def test_int8_needs_quantize_first_then_serves(tmp_path: Path, inputs: np.ndarray) -> None:
    weights = random_resnet18_weights(tmp_path, seed=5)
    with pytest.raises(StartupError, match="classify quantize"):
        load_model(ModelSpec("resnet18", "resnet18", weights, backend="onnxruntime-int8"))
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for name, data in real_photos().items():
        Image.open(io.BytesIO(data)).convert("RGB").save(calibration / f"{name}.jpg")
    result = quantize_model("resnet18", calibration, Settings(weights=weights, torch_threads=2))
    assert result.int8_graph.is_file() and result.calibration_images == len(real_photos())
    model = load_model(ModelSpec("resnet18", "resnet18", weights, backend="onnxruntime-int8"))
    assert (model.info.backend, model.info.precision) == ("onnxruntime", "int8")
    probabilities = model.backend.predict_proba(inputs)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)


def test_bf16_runs_where_the_cpu_has_it(tmp_path: Path, inputs: np.ndarray) -> None:
    weights = random_resnet18_weights(tmp_path, seed=6)
    spec = ModelSpec("r", "resnet18", weights, backend="torch-bf16")
    if not cpu_has_bf16():
        with pytest.raises(StartupError, match="AVX512-BF16 or AMX"):
            load_model(spec)
        return
    model = load_model(spec)
    assert model.info.precision == "bf16"
    fp32 = load_model(ModelSpec("r", "resnet18", weights)).backend.predict_proba(inputs)
    np.testing.assert_allclose(model.backend.predict_proba(inputs), fp32, atol=2e-2)


def test_cuda_fp16_says_clearly_when_there_is_no_gpu(tmp_path: Path) -> None:
    spec = ModelSpec("r", "resnet18", random_resnet18_weights(tmp_path, seed=8), backend="cuda-fp16")
    if torch.cuda.is_available():
        assert load_model(spec).info.device == "cuda"
    else:
        with pytest.raises(StartupError, match="needs a CUDA GPU"):
            load_model(spec)
