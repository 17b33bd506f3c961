"""classify.v1.ClassifierService, one method per RPC, in proto messages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from classify.v1 import classify_pb2 as pb
from service.api import convert
from service.core.control import ControlRef
from service.core.engine import Classification, ClassifyItem, Engine, EngineRef
from service.core.registry import VersionStatus
from service.errors import INTERNAL_MESSAGE, Internal, InvalidArgument, NotFound, ServiceError

logger = logging.getLogger(__name__)

# Requests of one stream in flight at once: enough to fill inference batches,
# small enough that a fast producer meets back-pressure instead of memory growth.
STREAM_WINDOW = 32


class ClassifierServiceApi:
    """Method names are the RPC names, so transports can dispatch by descriptor."""

    def __init__(self, engine: EngineRef, control: ControlRef | None = None) -> None:
        self._engine = engine
        self._control = control or ControlRef()

    async def Classify(self, request: pb.ClassifyRequest, timeout: float | None = None) -> pb.ClassifyResponse:
        result = await self._engine.get().classify(
            request.image, request.top_k, request.model, timeout, request.model_version
        )
        return convert.classify_response(result)

    async def ClassifyBatch(
        self, request: pb.ClassifyBatchRequest, timeout: float | None = None
    ) -> pb.ClassifyBatchResponse:
        items = [ClassifyItem(r.image, r.top_k, r.model, r.model_version) for r in request.requests]
        outcomes = await self._engine.get().classify_batch(items, timeout)
        return pb.ClassifyBatchResponse(results=[convert.batch_result(o) for o in outcomes])

    async def ClassifyStream(
        self, requests: AsyncIterator[pb.ClassifyStreamRequest], timeout: float | None = None
    ) -> AsyncIterator[pb.ClassifyStreamResponse]:
        """Classify requests concurrently as they arrive; answer in completion order."""
        engine = self._engine.get()
        deadline = None if timeout is None else time.monotonic() + timeout
        window = asyncio.Semaphore(STREAM_WINDOW)
        answers: asyncio.Queue[pb.ClassifyStreamResponse | None] = asyncio.Queue()
        in_flight: set[asyncio.Task[None]] = set()

        async def answer(message: pb.ClassifyStreamRequest) -> None:
            try:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                item = message.request
                outcome: Classification | ServiceError = await engine.classify(
                    item.image, item.top_k, item.model, remaining, item.model_version
                )
            except ServiceError as error:
                outcome = error
            except Exception:
                logger.exception("stream item %r failed", message.request_id)
                outcome = Internal(INTERNAL_MESSAGE)
            finally:
                window.release()
            await answers.put(convert.stream_response(message.request_id, outcome))

        async def read() -> None:
            try:
                async for message in requests:
                    await window.acquire()
                    task = asyncio.create_task(answer(message))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                while in_flight:
                    await asyncio.wait(set(in_flight))
            finally:
                await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await answers.get()) is not None:
                yield response
            await reader  # re-raises a failure of the request side
        finally:
            reader.cancel()
            for task in list(in_flight):
                task.cancel()

    async def ListModels(self, request: pb.ListModelsRequest, timeout: float | None = None) -> pb.ListModelsResponse:
        """Every model with a version held or in the repository (unloaded ones too: they can be loaded)."""
        engine = self._engine.get()
        index = self._control.index(engine.registry)
        names = dict.fromkeys(status.name for status in index)
        return pb.ListModelsResponse(
            models=[_describe(engine, name, index) for name in names], default_model=engine.default_model
        )

    async def GetModel(self, request: pb.GetModelRequest, timeout: float | None = None) -> pb.GetModelResponse:
        engine = self._engine.get()
        index = self._control.index(engine.registry)
        if not request.name:
            raise InvalidArgument("a model name is required")
        names = list(dict.fromkeys(status.name for status in index))
        if request.name not in names:
            raise NotFound(f"model {request.name!r} is not served; served models: {', '.join(names) or 'none'}")
        return pb.GetModelResponse(model=_describe(engine, request.name, index))

    async def LoadModel(self, request: pb.LoadModelRequest, timeout: float | None = None) -> pb.LoadModelResponse:
        await self._control.get().load(request.name, request.version)
        engine = self._engine.get()
        return pb.LoadModelResponse(model=_describe(engine, request.name, self._control.index(engine.registry)))

    async def UnloadModel(self, request: pb.UnloadModelRequest, timeout: float | None = None) -> pb.UnloadModelResponse:
        await self._control.get().unload(request.name, request.version)
        engine = self._engine.get()
        return pb.UnloadModelResponse(model=_describe(engine, request.name, self._control.index(engine.registry)))


def _describe(engine: Engine, name: str, index: list[VersionStatus]) -> pb.ModelInfo:
    """The model's current version (if one is ready) and the state of each of its versions."""
    info = engine.registry.current(name)
    message = convert.model_info(info) if info is not None else pb.ModelInfo(name=name)
    message.versions.extend(convert.version_status(status) for status in index if status.name == name)
    return message
