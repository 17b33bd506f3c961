"""Which models to serve: built-in names, ``NAME=ARCH:WEIGHTS[:LABELS]`` options, the default."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from service.core import efficientnet_lite0
from service.core.architectures import ARCHITECTURES
from service.core.models import BACKENDS, ModelSpec
from service.errors import StartupError

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "efficientnet_lite0"
BUILT_IN = ("resnet18", BUNDLED_MODEL)


def model_specs(
    options: Sequence[str],
    *,
    resnet18_weights: Path,
    resnet18_sha256: str | None = None,
    default_labels: Path | None = None,
    allow_fallback: bool = True,
    default_backend: str = "torch",
) -> list[ModelSpec]:
    """Turn ``--model`` options into specs; the first is the default model.

    An option may end in ``@BACKEND`` (``resnet18@onnxruntime-int8``); the
    others use ``default_backend``. With no options: ResNet18, or
    (``allow_fallback``, i.e. no explicit --weights) the bundled model when
    ResNet18's weights are absent.
    """
    if not options:
        if not allow_fallback:
            spec = ModelSpec("resnet18", "resnet18", resnet18_weights, weights_sha256=resnet18_sha256)
        else:
            spec = default_spec(resnet18_weights, resnet18_sha256)
        return [replace(spec, backend=default_backend)]
    specs = []
    for option in options:
        option, at, backend = option.partition("@")
        spec = _parse(option, resnet18_weights=resnet18_weights, resnet18_sha256=resnet18_sha256, default_labels=default_labels)
        chosen = backend if at else default_backend
        if chosen not in BACKENDS:
            raise StartupError(f"--model {option}@{chosen}: unknown backend; known: {', '.join(BACKENDS)}")
        specs.append(replace(spec, backend=chosen))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise StartupError(f"model names must be unique; repeated: {', '.join(duplicates)}")
    return specs


def default_spec(resnet18_weights: Path, resnet18_sha256: str | None = None) -> ModelSpec:
    """ResNet18 when its weights are present, else the bundled model, loudly."""
    if resnet18_weights.exists():
        # Present but corrupt is an error, never a silent fallback.
        return ModelSpec("resnet18", "resnet18", resnet18_weights, weights_sha256=resnet18_sha256)
    logger.warning(
        "\n%s\nResNet18 weights %s are not present: serving the bundled pretrained model %r instead.\n"
        "Every response names the model that answered. To serve ResNet18, run\n"
        "  classify weights fetch resnet18\n"
        "or put resnet18-f37072fd.pth there (or pass --weights PATH), then restart.\n%s",
        "=" * 78, resnet18_weights, BUNDLED_MODEL, "=" * 78,
    )
    return _bundled()


def _bundled() -> ModelSpec:
    return ModelSpec(
        BUNDLED_MODEL,
        BUNDLED_MODEL,
        efficientnet_lite0.bundled_weights_path(),
        weights_sha256=efficientnet_lite0.WEIGHTS_SHA256,
    )


def _parse(
    option: str, *, resnet18_weights: Path, resnet18_sha256: str | None, default_labels: Path | None
) -> ModelSpec:
    if option == "resnet18":
        return ModelSpec("resnet18", "resnet18", resnet18_weights, weights_sha256=resnet18_sha256)
    if option == BUNDLED_MODEL:
        return _bundled()
    name, equals, rest = option.partition("=")
    parts = rest.split(":")
    if not equals or not name or len(parts) not in (2, 3) or not all(parts):
        raise StartupError(
            f"--model {option!r}: expected {' or '.join(BUILT_IN)} or NAME=ARCH:WEIGHTS[:LABELS] "
            f"(ARCH one of {', '.join(sorted(ARCHITECTURES))})"
        )
    architecture, weights = parts[0], Path(parts[1])
    labels = Path(parts[2]) if len(parts) == 3 else default_labels
    if architecture not in ARCHITECTURES:
        raise StartupError(f"--model {option!r}: unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ModelSpec(name, architecture, weights, labels_file=labels)
