"""Inference backends: objects that turn a batch of input arrays into probabilities.

The ONNX Runtime backends (onnx_backend.py) need no torch; the torch backends
(torch_backend.py, the ``[torch]`` extra) are imported only when a model uses one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

BACKENDS = ("torch", "torch-bf16", "onnxruntime", "onnxruntime-int8", "cuda-fp16")
# Backends that serve an exported graph, and the precision of the graph each serves.
ONNX_PRECISION = {"onnxruntime": "fp32", "onnxruntime-int8": "int8"}


class Backend(Protocol):
    """Runs a network; called from the one long-lived inference thread."""

    name: str
    device: str
    precision: str

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Map an (N, 3, H, W) float32 batch to (N, classes) softmax probabilities."""
        ...


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions (AVX512-BF16 or AMX): without them bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
