"""Inference backends: objects that turn a batch of input arrays into probabilities."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn


class Backend(Protocol):
    """Runs a network; called from one long-lived inference thread per model."""

    name: str
    device: str
    precision: str

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Map an (N, 3, H, W) float32 batch to (N, classes) softmax probabilities."""
        ...


class TorchBackend:
    """PyTorch eager on the CPU, in channels_last layout (faster convolutions on x86)."""

    name = "torch"
    device = "cpu"
    precision = "fp32"

    def __init__(self, module: nn.Module) -> None:
        self._module = module.eval().to(memory_format=torch.channels_last)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            inputs = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            logits = self._module(inputs)
            return torch.softmax(logits.float(), dim=1).numpy()
