"""Building torch networks from verified weights files (the ``[torch]`` extra).

Imported only where a network is built: a torch backend, an export, a
quantization. Serving an exported graph never imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn
from torchvision import models as tv_models

from service.core import efficientnet_lite0
from service.errors import StartupError


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict with ``weights_only=True``: no pickled code is executed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StartupError(f"weights file {path} is not a loadable PyTorch state dict: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StartupError(f"weights file {path} does not hold a state dict of tensors")
    return state


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


def _resnet18_classes(module: nn.Module) -> int:
    return int(cast(nn.Linear, module.fc).out_features)


def _efficientnet_lite0_classes(module: nn.Module) -> int:
    return int(cast(int, module.num_classes))


_BUILDERS = {
    "resnet18": (_build_resnet18, _resnet18_classes),
    "efficientnet_lite0": (efficientnet_lite0.build, _efficientnet_lite0_classes),
}


def build_network(architecture: str, weights: Path) -> tuple[nn.Module, int]:
    """The network of ``architecture`` in eval mode with ``weights`` loaded strictly, and its class count.

    ``weights`` must already be verified (service/core/weights.py).
    """
    build, count_classes = _BUILDERS[architecture]
    module = build(load_state_dict(weights)).eval()
    return module, count_classes(module)
