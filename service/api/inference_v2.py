"""The Open Inference Protocol v2 (inference.GRPCInferenceService), one method per RPC, over the core.

Each served model is an OIP model under its served name, at the version
classify.v1 reports. It takes one input, ``IMAGE``: a BYTES tensor of encoded
image files, shape ``[N, 1]`` (or ``[N]``), and gives one output,
``PROBABILITIES``: FP32 ``[N, classes]``, or with Triton's classification
extension (output parameter ``classification: K``) BYTES ``[N, K]`` of
``"score:index:label"``. Images go through the engine like classify.v1's:
same limits, batching, deadline and load shedding.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

from inference import grpc_service_pb2 as pb
from inference import model_config_pb2 as config_pb
from service.contract.oip_tensors import fp32_raw, join_bytes_elements, split_bytes_elements
from service.core.control import ControlRef
from service.core.engine import Engine, EngineRef
from service.core.models import ModelInfo
from service.core.registry import VersionState
from service.core.statistics import Duration, Statistics
from service.errors import InvalidArgument, NotFound, Unavailable

INPUT = "IMAGE"
OUTPUT = "PROBABILITIES"
CLASSIFICATION = "classification"  # Triton's classification extension: output parameter, K classes
SERVER_NAME = "classify"
# "statistics" makes perf_analyzer read ModelStatistics; list only what is implemented.
_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
EXTENSIONS = ("classification", "binary_tensor_data", "statistics", "model_repository")


def server_version() -> str:
    try:
        return metadata.version("classify-service")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


def oip_version(info: ModelInfo) -> str:
    """The model's version in this protocol: an integer, as Triton's tools require.

    A model repository's versions are its folders' numbers (classify.v1 reports
    the same). perf_analyzer parses versions as numbers to find a model's
    statistics (a digest such as "f37072fd47e8" reads as 6 and its server-side
    figures come out empty), so a model given by --model is version "1" here;
    its weights digest (classify.v1's model_version) is in the model config's
    parameters.
    """
    return info.repository_version or FIXED_VERSION


FIXED_VERSION = "1"


def _registry_version(engine: Engine, name: str, version: str) -> str:
    """The engine's version for an OIP version of model ``name`` ("" = the current one)."""
    if not version or not name or engine.registry.in_repository(name):
        return version
    if version == FIXED_VERSION:
        return ""
    return version  # the weights digest, as classify.v1 names it, also pins


# Triton's words where ours differ: a repository version that is not loaded is UNAVAILABLE, "unloaded".
_OIP_STATES = {VersionState.UNLOADED: ("UNAVAILABLE", "unloaded")}


def platform(info: ModelInfo) -> str:
    """Triton's platform names for the framework that runs the model."""
    return "onnxruntime_onnx" if info.backend.startswith("onnxruntime") else "pytorch_libtorch"


class InferenceServiceApi:
    """Method names are the RPC names, so transports can dispatch by descriptor."""

    def __init__(self, engine: EngineRef, control: ControlRef | None = None) -> None:
        self._engine = engine
        self._control = control or ControlRef()

    async def ServerLive(self, request: pb.ServerLiveRequest, timeout: float | None = None) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, timeout: float | None = None
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._engine.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest, timeout: float | None = None) -> pb.ModelReadyResponse:
        if not self._engine.ready:
            return pb.ModelReadyResponse(ready=False)
        try:
            _model(self._engine.get(), request.name, request.version)
        except (NotFound, Unavailable, InvalidArgument):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, timeout: float | None = None
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=server_version(), extensions=EXTENSIONS)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, timeout: float | None = None
    ) -> pb.ModelMetadataResponse:
        engine = self._engine.get()
        info = _model(engine, request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=info.name,
            versions=_ready_versions(engine, info),
            platform=platform(info),
            inputs=[tensor(name=INPUT, datatype="BYTES", shape=[-1, 1])],
            outputs=[tensor(name=OUTPUT, datatype="FP32", shape=[-1, info.num_classes])],
        )

    async def ModelConfig(self, request: pb.ModelConfigRequest, timeout: float | None = None) -> pb.ModelConfigResponse:
        engine = self._engine.get()
        info = _model(engine, request.name, request.version)
        return pb.ModelConfigResponse(
            config=config_pb.ModelConfig(
                name=info.name,
                platform=platform(info),
                backend=info.backend,
                # A request may carry as many images as a classify.v1 batch call.
                max_batch_size=engine.max_batch_images,
                input=[config_pb.ModelInput(name=INPUT, data_type=config_pb.TYPE_STRING, dims=[1])],
                output=[config_pb.ModelOutput(name=OUTPUT, data_type=config_pb.TYPE_FP32, dims=[info.num_classes])],
                parameters={
                    "weights_sha256": config_pb.ModelParameter(string_value=info.weights_sha256),
                    "classify_v1_version": config_pb.ModelParameter(string_value=info.version),
                },
                dynamic_batching=config_pb.ModelDynamicBatching(
                    preferred_batch_size=[engine.batching.max_batch_size],
                    max_queue_delay_microseconds=round(engine.batching.max_delay_s * 1e6),
                ),
            )
        )

    async def ModelInfer(self, request: pb.ModelInferRequest, timeout: float | None = None) -> pb.ModelInferResponse:
        engine = self._engine.get()
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        info = _model(engine, request.model_name, request.model_version)
        images = _images(request)
        outputs = _requested_outputs(request)
        version = _registry_version(engine, info.name, request.model_version)
        inference = await engine.infer(images, info.name, timeout, version)
        info = inference.model  # the version that answered
        response = pb.ModelInferResponse(model_name=info.name, model_version=oip_version(info), id=request.id)
        for classes in outputs:
            if classes is None:
                response.outputs.add(name=OUTPUT, datatype="FP32", shape=inference.probabilities.shape)
                response.raw_output_contents.append(fp32_raw(inference.probabilities))
            else:
                k = min(classes, info.num_classes)
                response.outputs.add(name=OUTPUT, datatype="BYTES", shape=[len(images), k])
                response.raw_output_contents.append(join_bytes_elements(_classifications(inference.probabilities, k, info)))
        return response

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, timeout: float | None = None
    ) -> pb.ModelStatisticsResponse:
        engine = self._engine.get()
        if request.name:
            _model(engine, request.name, request.version)  # NOT_FOUND for an unknown model or version
        return pb.ModelStatisticsResponse(
            model_stats=[
                _statistics(info, stats)
                for info, stats in engine.statistics()
                if request.name in ("", info.name) and request.version in ("", oip_version(info), info.version)
            ]
        )

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, timeout: float | None = None
    ) -> pb.RepositoryIndexResponse:
        engine = self._engine.get()
        index = pb.RepositoryIndexResponse.ModelIndex
        models = []
        for status in self._control.index(engine.registry):
            ready = status.state is VersionState.READY and self._engine.ready
            if request.ready and not ready:
                continue
            in_repository = status.state is VersionState.UNLOADED or engine.registry.in_repository(status.name)
            version = status.version if in_repository else FIXED_VERSION
            state, reason = _OIP_STATES.get(status.state, (status.state.value, status.reason))
            models.append(index(name=status.name, version=version, state=state, reason=reason or status.reason))
        return pb.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, timeout: float | None = None
    ) -> pb.RepositoryModelLoadResponse:
        """Load every version of the model's repository folder (reload: new versions in, removed ones out)."""
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        await self._control.get().load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, timeout: float | None = None
    ) -> pb.RepositoryModelUnloadResponse:
        """Unload every version of the model; requests already admitted finish on them."""
        if not request.model_name:
            raise InvalidArgument("model_name is required")
        await self._control.get().unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _model(engine: Engine, name: str, version: str) -> ModelInfo:
    """The served model ``name`` at ``version`` (empty: its current one); NOT_FOUND when not ready."""
    if not name:
        raise InvalidArgument("a model name is required")
    with engine.lease(name, _registry_version(engine, name, version)) as served:
        return served.info


def _ready_versions(engine: Engine, info: ModelInfo) -> list[str]:
    if not engine.registry.in_repository(info.name):
        return [FIXED_VERSION]
    return [s.version for s in engine.registry.index() if s.name == info.name and s.state is VersionState.READY]


def _images(request: pb.ModelInferRequest) -> list[bytes]:
    """The encoded images of the one BYTES input, from raw_input_contents or contents."""
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT:
        names = ", ".join(repr(t.name) for t in request.inputs) or "none"
        raise InvalidArgument(f"expected exactly one input named {INPUT!r}; got {names}")
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise InvalidArgument(f"input {INPUT!r} must be BYTES (encoded image files); got {tensor.datatype!r}")
    shape = list(tensor.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise InvalidArgument(f"input {INPUT!r} must have shape [N, 1] or [N] with N >= 1; got {shape}")
    count = shape[0]
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise InvalidArgument("raw_input_contents must hold one entry per input")
        return split_bytes_elements(request.raw_input_contents[0], count)
    elements = list(tensor.contents.bytes_contents)
    if len(elements) != count:
        raise InvalidArgument(f"input {INPUT!r} holds {len(elements)} elements; its shape says {count}")
    return elements


def _requested_outputs(request: pb.ModelInferRequest) -> list[int | None]:
    """One entry per output to return: the classification's K, or None for raw probabilities."""
    if not request.outputs:
        return [None]
    outputs: list[int | None] = []
    for output in request.outputs:
        if output.name != OUTPUT:
            raise InvalidArgument(f"unknown output {output.name!r}; this model has one output, {OUTPUT!r}")
        parameter = output.parameters.get(CLASSIFICATION)
        if parameter is None:
            outputs.append(None)
            continue
        kind = parameter.WhichOneof("parameter_choice")
        k = getattr(parameter, kind) if kind in ("int64_param", "uint64_param") else None
        if not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"output parameter {CLASSIFICATION!r} must be a positive integer (K classes)")
        outputs.append(k)
    return outputs


def _classifications(probabilities: np.ndarray, k: int, info: ModelInfo) -> list[bytes]:
    """Triton's classification strings, row by row: the K best as "score:index:label"."""
    elements: list[bytes] = []
    for row in probabilities:
        best = np.argsort(-row, kind="stable")[:k]
        elements += [f"{row[i]:.6f}:{i}:{info.labels[i]}".encode() for i in best]
    return elements


def _duration(value: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=value.count, ns=value.ns)


def _statistics(info: ModelInfo, stats: Statistics) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=info.name,
        version=oip_version(info),
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
        ),
        batch_stats=[
            pb.InferBatchStatistics(batch_size=size, compute_infer=_duration(duration))
            for size, duration in sorted(stats.batches.items())
        ],
    )
