"""PyTorch eager backends (the ``[torch]`` extra): fp32 or bf16 on the CPU, fp16 on CUDA."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TorchBackend:
    """PyTorch eager in channels_last layout: fp32 or bf16 (autocast) on the CPU, fp16 on CUDA."""

    name = "torch"

    def __init__(self, module: nn.Module, precision: str = "fp32", device: str = "cpu", threads: int = 1) -> None:
        # One explicit thread budget: inference gets `threads`, decoding its own
        # pool; inter-op parallelism is unused by these networks.
        torch.set_num_threads(threads)
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


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())
