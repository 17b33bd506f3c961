"""ONNX Runtime backends: fp32 graphs exported from torch networks, int8 ones by static QDQ quantization.

No torch here: exporting is service/core/onnx_export.py, and what a graph is
(its manifest) is service/core/exported.py.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from service.errors import StartupError

logger = logging.getLogger(__name__)

INPUT, OUTPUT = "input", "logits"
OPSET = 17
# Bumped whenever the exported graph changes for the same weights (2: static
# "SAME" padding in EfficientNet-Lite0; 3: a manifest beside every graph), so
# caches of older releases are not served: they are exported again.
EXPORT_REVISION = 3


def graph_path(cache_dir: Path, model_name: str, weights_sha256: str, precision: str) -> Path:
    """Where the graph of these weights is cached: their digest in the name, so new weights are exported anew."""
    return cache_dir / f"{model_name}-{weights_sha256[:16]}-{precision}-x{EXPORT_REVISION}.onnx"


class OnnxBackend:
    """An ONNX Runtime session on the CPU with an explicit thread budget."""

    name = "onnxruntime"
    device = "cpu"

    def __init__(
        self, path: Path, precision: str, threads: int, spin: bool = False, *, input_name: str = INPUT, output_name: str = OUTPUT
    ) -> None:
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
        self._input, self._output = input_name, output_name

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run([self._output], {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)


def quantize(
    fp32_graph: Path, out: Path, calibration: Iterator[np.ndarray], signed_activations: bool = False, input_name: str = INPUT
) -> None:
    """Static QDQ int8 quantization of ``fp32_graph`` into ``out``, per-channel int8 weights, calibrated on real preprocessed images.

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
            self._batches = ({input_name: x[None]} for x in calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_graph), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if signed_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": signed_activations},
        )
