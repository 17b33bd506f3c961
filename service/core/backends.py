"""Inference backends: objects that turn a batch of input arrays into probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn


class Backend(Protocol):
    """Runs a network; called from the one long-lived inference thread."""

    name: str
    device: str
    precision: str

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Map an (N, 3, H, W) float32 batch to (N, classes) softmax probabilities."""
        ...


class TorchBackend:
    """PyTorch eager in channels_last layout: fp32 or bf16 (autocast) on the CPU, fp16 on CUDA."""

    name = "torch"

    def __init__(self, module: nn.Module, precision: str = "fp32", device: str = "cpu") -> None:
        self.device, self.precision = device, precision
        module = module.eval().to(memory_format=torch.channels_last)
        self._module = module.half().to(device) if device == "cuda" else module
        self._autocast_bf16 = precision == "bf16"

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            inputs = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            if self.device == "cuda":
                inputs = inputs.to("cuda", non_blocking=True).half()
            if self._autocast_bf16:
                # oneDNN runs the convolutions in bf16 (AVX512-BF16 / AMX); weights stay fp32.
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = self._module(inputs)
            else:
                logits = self._module(inputs)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions (AVX512-BF16 or AMX): without them bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
