"""`classify quantize`: an int8 ONNX graph of a model, calibrated on a folder of images."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.core import onnx_backend
from service.core.architectures import get_architecture
from service.core.catalog import model_specs
from service.core.images import ImageLimits, decode_image
from service.core.models import BackendOptions, graph_cache_dir, load_network
from service.core.preprocessing import Preprocessing
from service.errors import InvalidArgument, StartupError
from service.settings import Settings

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class QuantizeResult:
    int8_graph: Path
    calibration_images: int
    top1_agreement: float  # int8 vs fp32 ONNX on the calibration images


def calibration_inputs(directory: Path, settings: Settings, preprocess: Preprocessing, limit: int) -> list[np.ndarray]:
    limits = ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    inputs: list[np.ndarray] = []
    for path in sorted(directory.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or len(inputs) >= limit:
            continue
        try:
            inputs.append(preprocess(decode_image(path.read_bytes(), limits)))
        except InvalidArgument as error:
            logger.warning("skipping %s: %s", path, error)
    if not inputs:
        raise StartupError(f"no decodable images in {directory} to calibrate with")
    return inputs


def quantize_model(
    option: str, calibration_dir: Path, settings: Settings, limit: int = 500, signed_activations: bool = False
) -> QuantizeResult:
    (spec,) = model_specs(
        [option], resnet18_weights=settings.weights, resnet18_sha256=settings.weights_sha256,
        default_labels=settings.labels, allow_fallback=False,
    )
    architecture = get_architecture(spec.architecture)
    module, digest, _ = load_network(spec)
    cache = graph_cache_dir(spec, BackendOptions(cache_dir=settings.cache_dir))
    fp32_graph = onnx_backend.graph_path(cache, spec.name, digest, "fp32")
    if not fp32_graph.is_file():
        onnx_backend.export(module, fp32_graph, architecture.preprocessing.crop_size)
    inputs = calibration_inputs(calibration_dir, settings, architecture.preprocessing, limit)
    int8_graph = onnx_backend.graph_path(cache, spec.name, digest, "int8")

    def batches() -> Iterator[np.ndarray]:
        yield from inputs

    onnx_backend.quantize(fp32_graph, int8_graph, batches(), signed_activations)
    fp32 = onnx_backend.OnnxBackend(fp32_graph, "fp32", settings.torch_threads)
    int8 = onnx_backend.OnnxBackend(int8_graph, "int8", settings.torch_threads)
    stacked = np.stack(inputs)
    agree = float(np.mean(fp32.predict_proba(stacked).argmax(1) == int8.predict_proba(stacked).argmax(1)))
    return QuantizeResult(int8_graph, len(inputs), agree)
