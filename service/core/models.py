"""Served models: what a model is, and loading one from a verified weights file."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from service.core import onnx_backend
from service.core.architectures import get_architecture
from service.core.backends import Backend, TorchBackend, cpu_has_bf16
from service.core.preprocessing import Preprocessing
from service.core.weights import load_state_dict, verify_weights
from service.errors import StartupError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What to serve under a name: an architecture, its weights and optional labels."""

    name: str
    architecture: str
    weights: Path
    labels_file: Path | None = None
    weights_sha256: str | None = None
    backend: str = "torch"
    version: str = ""  # the version folder's name for a model of the model repository


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of a served model, as clients see it."""

    name: str
    architecture: str
    weights_sha256: str
    input_height: int
    input_width: int
    labels: tuple[str, ...]
    backend: str
    device: str
    precision: str
    repository_version: str = ""  # set for a model of the model repository

    @property
    def version(self) -> str:
        """The repository version number, or the first 12 hex digits of the weights' SHA-256."""
        return self.repository_version or self.weights_sha256[:12]

    @property
    def num_classes(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: metadata, its preprocessing and its backend."""

    info: ModelInfo
    preprocessing: Preprocessing
    backend: Backend


def read_labels(path: Path) -> tuple[str, ...]:
    """One label a line; blank lines at the end are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise StartupError(f"labels file {path} cannot be read: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    labels = tuple(line.strip() for line in lines)
    if not labels or any(not label for label in labels):
        raise StartupError(f"labels file {path} must hold one non-empty label a line")
    return labels


BACKENDS = ("torch", "torch-bf16", "onnxruntime", "onnxruntime-int8", "cuda-fp16")


@dataclass(frozen=True)
class BackendOptions:
    """Where compiled graphs are cached and how many threads inference may use."""

    cache_dir: Path = Path("weights/cache")
    threads: int = 1
    spin: bool = False  # ONNX Runtime's idle threads spin-wait


def _writable(directory: Path) -> bool:
    """``directory`` exists and is writable, or can be created."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK)
    return False


def graph_cache_dir(spec: ModelSpec, options: BackendOptions) -> Path:
    """Beside the weights when that directory is writable (not site-packages), else the cache directory.

    When neither is writable (a read-only image or file system), a directory in
    the temp dir: the graph is then exported again on each start, which the log says.
    """
    beside = spec.weights.parent
    if os.access(beside, os.W_OK) and "site-packages" not in beside.parts:
        return beside
    if _writable(options.cache_dir):
        return options.cache_dir
    fallback = Path(tempfile.gettempdir()) / "classify-graphs"
    logger.warning(
        "neither %s nor --cache-dir %s is writable: caching %s's ONNX graph in %s; "
        "pass --cache-dir DIR (a persistent writable directory) to keep it between starts",
        beside, options.cache_dir, spec.name, fallback,
    )
    return fallback


def exported_graph(spec: ModelSpec, module: nn.Module, digest: str, input_size: int, options: BackendOptions) -> Path:
    """The fp32 ONNX graph of ``spec``'s weights: from the cache, else exported now (timed, logged)."""
    path = onnx_backend.graph_path(graph_cache_dir(spec, options), spec.name, digest, "fp32")
    if path.is_file():
        logger.info("using the cached ONNX graph of %s at %s", spec.name, path)
        return path
    logger.info("exporting %s to ONNX at %s (first start with these weights)", spec.name, path)
    started = time.perf_counter()
    try:
        onnx_backend.export(module, path, input_size)
    except OSError as error:
        raise StartupError(
            f"model {spec.name!r}: cannot write its ONNX graph to {path}: {error}; "
            "pass --cache-dir DIR (a writable directory) or --backend torch"
        ) from None
    logger.info("exported %s to ONNX in %.1f s: %s", spec.name, time.perf_counter() - started, path)
    return path


def _backend(spec: ModelSpec, module: nn.Module, digest: str, input_size: int, options: BackendOptions) -> Backend:
    if spec.backend == "torch":
        return TorchBackend(module)
    if spec.backend == "torch-bf16":
        if not cpu_has_bf16():
            raise StartupError(f"model {spec.name!r}: backend torch-bf16 needs a CPU with AVX512-BF16 or AMX")
        return TorchBackend(module, precision="bf16")
    if spec.backend == "cuda-fp16":
        if not torch.cuda.is_available():
            raise StartupError(f"model {spec.name!r}: backend cuda-fp16 needs a CUDA GPU; none is visible")
        return TorchBackend(module, precision="fp16", device="cuda")
    if spec.backend == "onnxruntime":
        fp32_graph = exported_graph(spec, module, digest, input_size, options)
        return onnx_backend.OnnxBackend(fp32_graph, "fp32", options.threads, options.spin)
    if spec.backend == "onnxruntime-int8":
        int8_graph = onnx_backend.graph_path(graph_cache_dir(spec, options), spec.name, digest, "int8")
        if not int8_graph.is_file():
            raise StartupError(
                f"model {spec.name!r}: no int8 graph at {int8_graph}; create it with "
                f"`classify quantize {spec.name} --calibration DIR` (a folder of representative images)"
            )
        return onnx_backend.OnnxBackend(int8_graph, "int8", options.threads, options.spin)
    raise StartupError(f"model {spec.name!r}: unknown backend {spec.backend!r}; known: {', '.join(BACKENDS)}")


def load_network(spec: ModelSpec) -> tuple[nn.Module, str, tuple[str, ...]]:
    """The verified network in eval mode, its weights digest and its labels."""
    architecture = get_architecture(spec.architecture)
    digest = verify_weights(spec.weights, spec.weights_sha256)
    module = architecture.build(load_state_dict(spec.weights)).eval()
    num_classes = architecture.count_classes(module)
    labels = read_labels(spec.labels_file) if spec.labels_file else architecture.imagenet_labels
    if num_classes != len(labels):
        source = spec.labels_file or "the ImageNet labels"
        remedy = (
            "set key 'labels' of its model.toml to a file with one label per class"
            if spec.version
            else "pass --labels FILE with one label per class"
        )
        raise StartupError(
            f"model {spec.name!r}: the weights have {num_classes} classes but {source} has {len(labels)} labels; {remedy}"
        )
    return module, digest, labels


def load_model(spec: ModelSpec, options: BackendOptions | None = None) -> LoadedModel:
    """Verify, load and build ``spec``; every failure is a StartupError naming the remedy."""
    architecture = get_architecture(spec.architecture)
    module, digest, labels = load_network(spec)
    size = architecture.preprocessing.crop_size
    backend = _backend(spec, module, digest, size, options or BackendOptions())
    info = ModelInfo(
        name=spec.name,
        architecture=architecture.name,
        weights_sha256=digest,
        input_height=size,
        input_width=size,
        labels=labels,
        backend=backend.name,
        device=backend.device,
        precision=backend.precision,
        repository_version=spec.version,
    )
    logger.info(
        "loaded model %s (%s, %d classes, %s %s on %s) from %s sha256=%s",
        info.name, info.architecture, info.num_classes, backend.name, backend.precision, backend.device,
        spec.weights, digest,
    )
    return LoadedModel(info=info, preprocessing=architecture.preprocessing, backend=backend)
