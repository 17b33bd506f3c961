"""`classify quantize`: an int8 ONNX graph of a model, calibrated on a folder of images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from service.core import onnx_backend
from service.core.exported import read_exported, write_exported
from service.core.images import ImageLimits, decode_image
from service.core.model_options import model_specs
from service.core.models import BackendOptions, graph_cache_dir, graph_of_weights, spec_labels
from service.core.preprocessing import Preprocessing
from service.core.weights import verify_weights
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
    """Quantize the fp32 graph of ``option``'s weights (exported first if it is not cached) into the graph cache.

    Needs torch only when the fp32 graph must be exported; the int8 graph gets
    its own manifest (precision int8), so it serves without torch.
    """
    (spec,) = model_specs(
        [option], resnet18_weights=settings.weights, resnet18_sha256=settings.weights_sha256,
        default_labels=settings.labels, allow_fallback=False, cache_dir=settings.cache_dir,
    )
    options = BackendOptions(cache_dir=settings.cache_dir, threads=settings.torch_threads)
    digest = verify_weights(spec.weights, spec.weights_sha256)
    fp32_graph = graph_of_weights(spec, digest, spec_labels(spec), options)
    fp32_manifest = read_exported(fp32_graph)
    inputs = calibration_inputs(calibration_dir, settings, fp32_manifest.preprocessing, limit)
    int8_graph = onnx_backend.graph_path(graph_cache_dir(spec, options), spec.name, digest, "int8")
    write_exported(
        int8_graph,
        replace(fp32_manifest, precision="int8"),
        lambda path: onnx_backend.quantize(fp32_graph, path, iter(inputs), signed_activations, fp32_manifest.input),
    )
    fp32 = onnx_backend.OnnxBackend(fp32_graph, "fp32", settings.torch_threads)
    int8 = onnx_backend.OnnxBackend(int8_graph, "int8", settings.torch_threads)
    stacked = np.stack(inputs)
    agree = float(np.mean(fp32.predict_proba(stacked).argmax(1) == int8.predict_proba(stacked).argmax(1)))
    return QuantizeResult(int8_graph, len(inputs), agree)
