"""gRPC servicers: read the deadline from the context, call the API object."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from classify import classify_pb2 as tutorial_pb
from classify import classify_pb2_grpc as tutorial_grpc
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from inference import grpc_service_pb2 as oip_pb
from inference import grpc_service_pb2_grpc as oip_grpc
from service.api.classifier_v1 import ClassifierServiceApi
from service.api.inference_v2 import InferenceServiceApi
from service.api.tutorial import TutorialClassifierApi
from service.errors import Unimplemented

Context: TypeAlias = grpc.aio.ServicerContext


class ClassifierServiceServicer(pb_grpc.ClassifierServiceServicer):
    def __init__(self, api: ClassifierServiceApi) -> None:
        self._api = api

    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        return await self._api.Classify(request, context.time_remaining())

    async def ClassifyBatch(self, request: pb.ClassifyBatchRequest, context: Context) -> pb.ClassifyBatchResponse:
        return await self._api.ClassifyBatch(request, context.time_remaining())

    async def ClassifyStream(
        self, request_iterator: AsyncIterator[pb.ClassifyStreamRequest], context: Context
    ) -> AsyncIterator[pb.ClassifyStreamResponse]:
        async for response in self._api.ClassifyStream(request_iterator, context.time_remaining()):
            yield response

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        return await self._api.ListModels(request, context.time_remaining())

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        return await self._api.GetModel(request, context.time_remaining())

    async def LoadModel(self, request: pb.LoadModelRequest, context: Context) -> pb.LoadModelResponse:
        return await self._api.LoadModel(request, context.time_remaining())

    async def UnloadModel(self, request: pb.UnloadModelRequest, context: Context) -> pb.UnloadModelResponse:
        return await self._api.UnloadModel(request, context.time_remaining())


class TutorialClassifierServicer(tutorial_grpc.ClassifierServicer):
    def __init__(self, api: TutorialClassifierApi) -> None:
        self._api = api

    async def Predict(self, request: tutorial_pb.ImageRequest, context: Context) -> tutorial_pb.PredictionResponse:
        return await self._api.Predict(request, context.time_remaining())


def _with_deadline(call: Callable[[Any, float | None], Awaitable[Any]]) -> Callable[[Any, Context], Awaitable[Any]]:
    async def method(request: Any, context: Context) -> Any:
        return await call(request, context.time_remaining())

    return method


class InferenceServiceServicer(oip_grpc.GRPCInferenceServiceServicer):
    """Every declared RPC calls the API object's method of the same name (all are unary)."""

    def __init__(self, api: InferenceServiceApi) -> None:
        for method in oip_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
            setattr(self, method.name, _with_deadline(getattr(api, method.name)))


class UnimplementedMethods(grpc.GenericRpcHandler):
    """UNIMPLEMENTED, naming the call, for methods of ``services`` that the proto does not declare.

    The Open Inference Protocol has calls this server leaves out (streaming
    inference, shared memory, trace and log settings); their clients get a
    message that says which call is missing instead of grpc's bare "Method not found".
    """

    def __init__(self, services: tuple[str, ...]) -> None:
        self._prefixes = tuple(f"/{name}/" for name in services)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if not method.startswith(self._prefixes):
            return None

        async def refuse(requests: Any, context: Context) -> AsyncIterator[Any]:
            raise Unimplemented(f"{method[1:]} is not implemented by this server")
            yield  # unreachable: makes this a streaming handler, which answers any kind of call

        return grpc.stream_stream_rpc_method_handler(refuse)
