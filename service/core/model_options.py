"""Which models to serve: built-in names, ``NAME=ARCH:WEIGHTS[:LABELS]``, exported graphs, the default."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from service.core import efficientnet_lite0
from service.core.architectures import ARCHITECTURES
from service.core.exported import read_exported
from service.core.models import BACKENDS, BackendOptions, ModelSpec, cached_graph
from service.core.weights import PINNED_SHA256
from service.errors import StartupError

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "efficientnet_lite0"
BUILT_IN = ("resnet18", BUNDLED_MODEL)
EXPORTED_SUFFIX = ".onnx"


def model_specs(
    options: Sequence[str],
    *,
    resnet18_weights: Path,
    resnet18_sha256: str | None = None,
    default_labels: Path | None = None,
    allow_fallback: bool = True,
    default_backend: str = "torch",
    cache_dir: Path = BackendOptions.cache_dir,
) -> list[ModelSpec]:
    """Turn ``--model`` options into specs; the first is the default model.

    An option may end in ``@BACKEND`` (``resnet18@onnxruntime-int8``); the
    others use ``default_backend`` (an exported graph: the backend its manifest
    names). With no options: ResNet18, or (``allow_fallback``, i.e. no explicit
    --weights) the bundled model when neither ResNet18's weights nor their
    exported graph are present.
    """
    if not options:
        resnet18 = ModelSpec("resnet18", "resnet18", resnet18_weights, weights_sha256=resnet18_sha256)
        if allow_fallback and not _present(resnet18, default_backend, cache_dir):
            resnet18 = _bundled_fallback(resnet18_weights)
        return [replace(resnet18, backend=default_backend)]
    specs = []
    for option in options:
        option, at, backend = option.partition("@")
        spec = _parse(option, resnet18_weights=resnet18_weights, resnet18_sha256=resnet18_sha256, default_labels=default_labels)
        chosen = backend if at else (_exported_backend(spec) if spec.exported else default_backend)
        if chosen not in BACKENDS:
            raise StartupError(f"--model {option}@{chosen}: unknown backend; known: {', '.join(BACKENDS)}")
        specs.append(replace(spec, backend=chosen))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise StartupError(f"model names must be unique; repeated: {', '.join(duplicates)}")
    return specs


def _present(spec: ModelSpec, backend: str, cache_dir: Path) -> bool:
    """The weights file exists, or (ONNX Runtime) the graph exported from its pinned digest does."""
    if spec.weights.exists():
        return True  # present but corrupt is an error at load, never a silent fallback
    digest = spec.weights_sha256 or PINNED_SHA256.get(spec.weights.name)
    options = BackendOptions(cache_dir=cache_dir)
    return digest is not None and backend.startswith("onnxruntime") and cached_graph(spec, digest, "fp32", options) is not None


def _bundled_fallback(resnet18_weights: Path) -> ModelSpec:
    logger.warning(
        "\n%s\nResNet18 weights %s are not present: serving the bundled pretrained model %r instead.\n"
        "Every response names the model that answered. To serve ResNet18, run\n"
        "  classify weights fetch resnet18\n"
        "or put resnet18-f37072fd.pth there (or pass --weights PATH), or put its export\n"
        "(`classify export resnet18` where torch is) in --cache-dir, then restart.\n%s",
        "=" * 78, resnet18_weights, BUNDLED_MODEL, "=" * 78,
    )
    return _bundled()


def _bundled() -> ModelSpec:
    """The bundled model; without its weights package (the [torch] extra), its exported graph serves by digest."""
    return ModelSpec(
        BUNDLED_MODEL,
        BUNDLED_MODEL,
        efficientnet_lite0.bundled_weights_path(),
        weights_sha256=efficientnet_lite0.WEIGHTS_SHA256,
    )


def _exported_backend(spec: ModelSpec) -> str:
    assert spec.exported is not None
    return read_exported(spec.exported, verify_graph=False).backend


def _parse(
    option: str, *, resnet18_weights: Path, resnet18_sha256: str | None, default_labels: Path | None
) -> ModelSpec:
    if option == "resnet18":
        return ModelSpec("resnet18", "resnet18", resnet18_weights, weights_sha256=resnet18_sha256)
    if option == BUNDLED_MODEL:
        return _bundled()
    name, equals, rest = option.partition("=") if "=" in option else ("", "", option)
    if rest.endswith(EXPORTED_SUFFIX):
        graph = Path(rest)
        manifest = read_exported(graph, verify_graph=False)  # the full check comes at load
        return ModelSpec(name or manifest.name, manifest.architecture, graph, exported=graph)
    parts = rest.split(":")
    if not equals or not name or len(parts) not in (2, 3) or not all(parts):
        raise StartupError(
            f"--model {option!r}: expected {' or '.join(BUILT_IN)}, NAME=ARCH:WEIGHTS[:LABELS] "
            f"(ARCH one of {', '.join(sorted(ARCHITECTURES))}) or [NAME=]GRAPH.onnx (from `classify export`)"
        )
    architecture, weights = parts[0], Path(parts[1])
    labels = Path(parts[2]) if len(parts) == 3 else default_labels
    if architecture not in ARCHITECTURES:
        raise StartupError(f"--model {option!r}: unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ModelSpec(name, architecture, weights, labels_file=labels)
