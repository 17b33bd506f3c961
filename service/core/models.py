"""Served models: what a model is, and loading one from a verified weights file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from service.core.architectures import get_architecture
from service.core.backends import Backend, TorchBackend
from service.core.errors import StartupError
from service.core.preprocessing import Preprocessing
from service.core.weights import load_state_dict, verify_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What to serve under a name: an architecture, its weights and optional labels."""

    name: str
    architecture: str
    weights: Path
    labels_file: Path | None = None
    weights_sha256: str | None = None


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

    @property
    def version(self) -> str:
        return self.weights_sha256[:12]

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


def load_model(spec: ModelSpec) -> LoadedModel:
    """Verify, load and build ``spec``; every failure is a StartupError naming the remedy."""
    architecture = get_architecture(spec.architecture)
    digest = verify_weights(spec.weights, spec.weights_sha256)
    state = load_state_dict(spec.weights)
    module = architecture.build(state)
    num_classes = architecture.count_classes(module)
    labels = read_labels(spec.labels_file) if spec.labels_file else architecture.imagenet_labels
    if num_classes != len(labels):
        source = spec.labels_file or "the ImageNet labels"
        raise StartupError(
            f"model {spec.name!r}: the weights have {num_classes} classes but {source} "
            f"has {len(labels)} labels; pass --labels FILE with one label per class"
        )
    backend = TorchBackend(module)
    size = architecture.preprocessing.crop_size
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
    )
    logger.info(
        "loaded model %s (%s, %d classes) from %s sha256=%s",
        info.name, info.architecture, info.num_classes, spec.weights, digest,
    )
    return LoadedModel(info=info, preprocessing=architecture.preprocessing, backend=backend)
