"""ONNX Runtime backends: fp32 exported from the torch model, int8 by static QDQ quantization.

The exported graph is cached beside the weights (or in the cache directory when
that is read-only) with the weights' digest in its name, so new weights are
re-exported and stale graphs are never served.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.errors import StartupError

logger = logging.getLogger(__name__)

INPUT, OUTPUT = "input", "logits"
OPSET = 17
# Bumped whenever the exported graph changes for the same weights (2: static
# "SAME" padding in EfficientNet-Lite0), so caches of older releases are not served.
EXPORT_REVISION = 2


def graph_path(cache_dir: Path, model_name: str, weights_sha256: str, precision: str) -> Path:
    return cache_dir / f"{model_name}-{weights_sha256[:16]}-{precision}-x{EXPORT_REVISION}.onnx"


def export(module: nn.Module, path: Path, input_size: int) -> Path:
    """Export ``module`` to ONNX with a dynamic batch axis; written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.zeros(1, 3, input_size, input_size)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.part", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        # The TorchScript-based exporter writes one self-contained file.
        torch.onnx.export(
            module.eval(), (sample,), str(partial), dynamo=False, opset_version=OPSET,
            input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
        partial.chmod(0o644)  # NamedTemporaryFile creates 0600
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


class OnnxBackend:
    """An ONNX Runtime session on the CPU with an explicit thread budget."""

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, path: Path, precision: str, threads: int, spin: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning idle threads burn the cores decoding and the servers need:
        # without it int8 served 4-11 % more img/s here (bench/results/thread-layouts.txt).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:
            raise StartupError(f"ONNX graph {path} cannot be loaded: {error}") from None
        self.precision = precision
        self.path = path

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run([OUTPUT], {INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)


def quantize(
    fp32_graph: Path, int8_graph: Path, calibration: Iterator[np.ndarray], signed_activations: bool = False
) -> Path:
    """Static QDQ int8 quantization, per-channel int8 weights, calibrated on real preprocessed images.

    Unsigned activations (the default) hit ONNX Runtime's u8s8 VNNI kernels,
    several times faster than fp32 here (model-b8 rows of bench/results/).
    Signed symmetric activations (``signed_activations``) run s8s8 kernels,
    slower than fp32, for at most a point of agreement more; compare with
    `python -m bench.int8_agreement [--signed-activations]`.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = ({INPUT: x[None]} for x in calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    int8_graph.parent.mkdir(parents=True, exist_ok=True)
    partial = int8_graph.with_name(int8_graph.name + ".part")
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_graph), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(partial), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if signed_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": signed_activations},
        )
    os.replace(partial, int8_graph)
    return int8_graph
