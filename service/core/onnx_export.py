"""Exporting a torch network to an ONNX graph (the ``[torch]`` extra)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from service.core.onnx_backend import INPUT, OPSET, OUTPUT


def export_graph(module: nn.Module, path: Path, input_size: int) -> None:
    """Write ``module`` as an ONNX graph with a dynamic batch axis to ``path`` (a temporary name)."""
    sample = torch.zeros(1, 3, input_size, input_size)
    # The TorchScript-based exporter writes one self-contained file.
    torch.onnx.export(
        module.eval(), (sample,), str(path), dynamo=False, opset_version=OPSET,
        input_names=[INPUT], output_names=[OUTPUT],
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
    )
