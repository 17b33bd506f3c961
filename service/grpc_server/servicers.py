"""gRPC servicers: read the deadline from the context, call the API object."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from classify import classify_pb2 as tutorial_pb
from classify import classify_pb2_grpc as tutorial_grpc
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from service.api.classifier_v1 import ClassifierServiceApi
from service.api.tutorial import TutorialClassifierApi

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
