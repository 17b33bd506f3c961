"""Network architectures the service can serve, and how each is built and fed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torchvision import models as tv_models
from torchvision.transforms import InterpolationMode

from service.core import efficientnet_lite0
from service.core.preprocessing import Preprocessing
from service.errors import StartupError


@dataclass(frozen=True)
class Architecture:
    """How to build a network from a state dict, feed it, and name its classes."""

    name: str
    build: Callable[[dict[str, torch.Tensor]], nn.Module]
    count_classes: Callable[[nn.Module], int]
    preprocessing: Preprocessing
    imagenet_labels: tuple[str, ...]


def _strict_load(module: nn.Module, state: dict[str, torch.Tensor], architecture: str) -> nn.Module:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        # PyTorch's message lists the missing/unexpected/mis-shaped keys.
        raise StartupError(f"weights do not fit the {architecture} architecture: {exc}") from None
    return module


def _build_resnet18(state: dict[str, torch.Tensor]) -> nn.Module:
    fc_weight = state.get("fc.weight")
    if fc_weight is None or fc_weight.ndim != 2:
        raise StartupError("weights do not fit the resnet18 architecture: no 2-D fc.weight tensor")
    # The class count comes from the weights, so fine-tuned heads load too.
    module = tv_models.resnet18(weights=None, num_classes=int(fc_weight.shape[0]))
    return _strict_load(module, state, "resnet18")


def _torchvision_preprocessing(weights: tv_models.WeightsEnum) -> Preprocessing:
    """The preprocessing torchvision publishes with ``weights``, read from its transform."""
    transform = weights.transforms()
    return Preprocessing(
        resize_size=int(transform.resize_size[0]),
        crop_size=int(transform.crop_size[0]),
        mean=tuple(transform.mean),  # type: ignore[arg-type]
        std=tuple(transform.std),  # type: ignore[arg-type]
        interpolation=transform.interpolation,
    )


RESNET18 = Architecture(
    name="resnet18",
    build=_build_resnet18,
    count_classes=lambda module: int(cast(nn.Linear, module.fc).out_features),
    preprocessing=_torchvision_preprocessing(tv_models.ResNet18_Weights.IMAGENET1K_V1),
    imagenet_labels=tuple(tv_models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]),
)

_IMAGENET_LABELS = RESNET18.imagenet_labels

EFFICIENTNET_LITE0 = Architecture(
    name="efficientnet_lite0",
    build=efficientnet_lite0.build,
    count_classes=lambda module: int(cast(int, module.num_classes)),
    # Measured, not assumed (docs/efficientnet_lite0.md): these weights were
    # trained on inputs scaled to [-1, 1] (mean = std = 0.5); the ImageNet
    # mean/std that timm lists for its own efficientnet_lite0 is wrong for them.
    preprocessing=Preprocessing(
        resize_size=efficientnet_lite0.INPUT_SIZE,
        crop_size=efficientnet_lite0.INPUT_SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation=InterpolationMode.BICUBIC,
    ),
    imagenet_labels=_IMAGENET_LABELS,  # the same 1000 ImageNet-1k classes, same order
)

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (RESNET18, EFFICIENTNET_LITE0)}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise StartupError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
