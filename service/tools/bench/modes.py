"""The request kinds the benchmark sends: one small class per mode, each a ``send(n)`` and its bytes per image.

Our API goes through :class:`classify_client.AsyncClient` where it can (its cost
is part of what a user pays); the multipart route, the bidirectional stream and
the tutorial's API have no client method, so those modes use httpx or the
generated stubs directly.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
import grpc.aio
import httpx
from google.protobuf import json_format

from classify import classify_pb2 as tutorial_pb
from classify import classify_pb2_grpc as tutorial_pb_grpc
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from classify_client.client import NO_RETRY, AsyncClient, ClassifyError, code_name, error_from_http, json_body
from service.tools.bench.loadgen import Sent

GRPC_FRAME = 5  # gRPC's length-prefixed message header: 1 flag byte + 4 length bytes
REQUEST_TIMEOUT_S = 60.0

# mode -> the address it needs ("grpc" or "http") and whether the tutorial baseline has it too.
MODES: dict[str, tuple[str, bool]] = {
    "grpc-unary": ("grpc", False),
    "grpc-stream": ("grpc", False),
    "grpc-batch": ("grpc", False),
    "http-json": ("http", False),
    "http-multipart": ("http", False),
    "tutorial-file": ("http", True),
    "tutorial-b64": ("http", True),
    "tutorial-grpc": ("grpc", True),
    # Another server's HTTP API (BentoML, Ray Serve: bench/peers/), given by `--peer NAME=URL`.
    "peer-multipart": ("http", False),
}
PEER_MODES = frozenset({"peer-multipart"})


@dataclass(frozen=True)
class Workload:
    """What every request carries: images (round-robin by request number), top-K, model, batch size."""

    images: tuple[bytes, ...]
    top_k: int = 5
    model: str = ""
    batch_size: int = 8

    def image(self, n: int) -> bytes:
        return self.images[n % len(self.images)]


class Mode(Protocol):
    images_per_request: int

    def bytes_per_image(self) -> float:
        """Mean request payload per image over the workload's images."""
        ...

    async def send(self, n: int) -> Sent:
        """Send request number ``n``; raise on failure (ClassifyError where the code is known)."""
        ...

    async def aclose(self) -> None: ...


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _http_pool() -> httpx.Limits:
    # Keep every worker's connection alive: a closed loop must not pay for new connections.
    return httpx.Limits(max_connections=512, max_keepalive_connections=512)


class GrpcUnary:
    images_per_request = 1

    def __init__(self, address: str, work: Workload) -> None:
        self._work = work
        self._client = AsyncClient(address, retry=NO_RETRY, timeout=REQUEST_TIMEOUT_S)

    def bytes_per_image(self) -> float:
        w = self._work
        return _mean([GRPC_FRAME + pb.ClassifyRequest(image=i, top_k=w.top_k, model=w.model).ByteSize() for i in w.images])

    async def send(self, n: int) -> Sent:
        await self._client.classify(self._work.image(n), self._work.top_k, self._work.model)
        return Sent(1)

    async def aclose(self) -> None:
        await self._client.close()


class GrpcBatch:
    def __init__(self, address: str, work: Workload) -> None:
        self._work = work
        self.images_per_request = work.batch_size
        self._client = AsyncClient(address, retry=NO_RETRY, timeout=REQUEST_TIMEOUT_S)

    def _images(self, n: int) -> list[bytes]:
        return [self._work.image(n * self.images_per_request + i) for i in range(self.images_per_request)]

    def bytes_per_image(self) -> float:
        w = self._work
        sizes = [
            GRPC_FRAME + pb.ClassifyBatchRequest(
                requests=[pb.ClassifyRequest(image=i, top_k=w.top_k, model=w.model) for i in self._images(n)]
            ).ByteSize()
            for n in range(len(w.images))
        ]
        return _mean(sizes) / self.images_per_request

    async def send(self, n: int) -> Sent:
        outcomes = await self._client.classify_batch(self._images(n), self._work.top_k, self._work.model)
        errors = tuple(o.code for o in outcomes if isinstance(o, ClassifyError))
        return Sent(len(outcomes) - len(errors), errors)

    async def aclose(self) -> None:
        await self._client.close()


class GrpcStream:
    """One bidirectional stream shared by all workers: concurrency = requests in flight on it."""

    images_per_request = 1

    def __init__(self, address: str, work: Workload) -> None:
        self._work = work
        self._channel = grpc.aio.insecure_channel(address)
        self._outbox: asyncio.Queue[pb.ClassifyStreamRequest | None] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[pb.ClassifyStreamResponse]] = {}
        self._ids = itertools.count()
        self._broken: ClassifyError | None = None
        self._call = pb_grpc.ClassifierServiceStub(self._channel).ClassifyStream(self._requests())
        self._reader = asyncio.ensure_future(self._read())

    def _request(self, image: bytes, request_id: str = "") -> pb.ClassifyStreamRequest:
        w = self._work
        return pb.ClassifyStreamRequest(request_id=request_id, request=pb.ClassifyRequest(image=image, top_k=w.top_k, model=w.model))

    def bytes_per_image(self) -> float:
        return _mean([GRPC_FRAME + self._request(i, "123456").ByteSize() for i in self._work.images])

    async def _requests(self) -> AsyncIterator[pb.ClassifyStreamRequest]:
        while (request := await self._outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for response in self._call:
                future = self._pending.pop(response.request_id, None)
                if future is not None and not future.done():
                    future.set_result(response)
            self._broken = ClassifyError("UNAVAILABLE", "the stream ended")
        except grpc.RpcError as error:
            call: grpc.aio.AioRpcError = error  # type: ignore[assignment]
            self._broken = ClassifyError(call.code().name, call.details() or "")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._broken)
        self._pending.clear()

    async def send(self, n: int) -> Sent:
        if self._broken is not None:
            raise self._broken
        request_id = str(next(self._ids))
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._outbox.put(self._request(self._work.image(n), request_id))
        response = await future
        if response.HasField("error"):
            raise ClassifyError(code_name(response.error.code), response.error.message)
        return Sent(1)

    async def aclose(self) -> None:
        await self._outbox.put(None)  # half-close: the server answers what it has, then ends the stream
        try:
            await asyncio.wait_for(self._reader, REQUEST_TIMEOUT_S)
        finally:
            await self._channel.close()


class HttpJson:
    images_per_request = 1

    def __init__(self, url: str, work: Workload) -> None:
        self._work = work
        self._client = AsyncClient(url, transport="http", retry=NO_RETRY, timeout=REQUEST_TIMEOUT_S)

    def bytes_per_image(self) -> float:
        w = self._work
        return _mean([len(json_body(pb.ClassifyRequest(image=i, top_k=w.top_k, model=w.model))) for i in w.images])

    async def send(self, n: int) -> Sent:
        await self._client.classify(self._work.image(n), self._work.top_k, self._work.model)
        return Sent(1)

    async def aclose(self) -> None:
        await self._client.close()


class _RawHttp:
    """A POST built by httpx each time (as a user's code would), answered with JSON or a google.rpc.Status."""

    images_per_request = 1
    path = ""

    def __init__(self, url: str, work: Workload) -> None:
        self._work = work
        self._url = url
        self._client = httpx.AsyncClient(base_url=url, limits=_http_pool(), timeout=REQUEST_TIMEOUT_S)

    def _arguments(self, image: bytes) -> dict[str, object]:
        raise NotImplementedError

    def _check(self, body: object) -> None:
        """Decode the answer as a client would."""

    def bytes_per_image(self) -> float:
        sizes = [len(httpx.Request("POST", self._url + self.path, **self._arguments(i)).read()) for i in self._work.images]  # type: ignore[arg-type]
        return _mean(sizes)

    async def send(self, n: int) -> Sent:
        try:
            response = await self._client.post(self.path, **self._arguments(self._work.image(n)))  # type: ignore[arg-type]
        except httpx.TimeoutException as error:
            raise ClassifyError("DEADLINE_EXCEEDED", repr(error)) from None
        except httpx.HTTPError as error:
            raise ClassifyError("UNAVAILABLE", repr(error)) from None
        if response.status_code != 200:
            raise error_from_http(response)
        self._check(response.json())
        return Sent(1)

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpMultipart(_RawHttp):
    path = "/v1/classify:upload"

    def _arguments(self, image: bytes) -> dict[str, object]:
        fields = {"topK": str(self._work.top_k)}
        if self._work.model:
            fields["model"] = self._work.model
        return {"files": {"file": ("image.jpg", image, "image/jpeg")}, "data": fields}

    def _check(self, body: object) -> None:
        json_format.ParseDict(body, pb.ClassifyResponse(), ignore_unknown_fields=True)


class TutorialFile(_RawHttp):
    path = "/predict/file"

    def _arguments(self, image: bytes) -> dict[str, object]:
        return {"files": {"file": ("image.jpg", image, "image/jpeg")}, "params": {"topk": self._work.top_k}}


class TutorialB64(_RawHttp):
    path = "/predict/b64"

    def _arguments(self, image: bytes) -> dict[str, object]:
        return {"json": {"image_base64": base64.b64encode(image).decode("ascii"), "topk": self._work.top_k}}


class PeerMultipart(_RawHttp):
    """The peers' POST /classify: the image as multipart part ``file``, ``top_k`` as a form field (bench/peers/)."""

    path = "/classify"

    def _arguments(self, image: bytes) -> dict[str, object]:
        return {"files": {"file": ("image.jpg", image, "image/jpeg")}, "data": {"top_k": str(self._work.top_k)}}

    def _check(self, body: object) -> None:
        # One image's top-K, [{label, probability, class_index}, ...], possibly in a batch of one.
        answer = body[0] if isinstance(body, list) and body and isinstance(body[0], list) else body
        if not isinstance(answer, list) or len(answer) != self._work.top_k or "label" not in answer[0]:
            raise ClassifyError("INTERNAL", f"unexpected answer: {str(body)[:200]}")


class TutorialGrpc:
    """The tutorial's ``classify.Classifier/Predict``, with the tutorial's own generated stub."""

    images_per_request = 1

    def __init__(self, address: str, work: Workload) -> None:
        self._work = work
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = tutorial_pb_grpc.ClassifierStub(self._channel)

    def bytes_per_image(self) -> float:
        return _mean([GRPC_FRAME + tutorial_pb.ImageRequest(image=i, topk=self._work.top_k).ByteSize() for i in self._work.images])

    async def send(self, n: int) -> Sent:
        request = tutorial_pb.ImageRequest(image=self._work.image(n), topk=self._work.top_k)
        try:
            await self._stub.Predict(request, timeout=REQUEST_TIMEOUT_S)
        except grpc.RpcError as error:
            call: grpc.aio.AioRpcError = error  # type: ignore[assignment]
            raise ClassifyError(call.code().name, call.details() or "") from None
        return Sent(1)

    async def aclose(self) -> None:
        await self._channel.close()


_CLASSES: dict[str, type] = {
    "grpc-unary": GrpcUnary,
    "grpc-stream": GrpcStream,
    "grpc-batch": GrpcBatch,
    "http-json": HttpJson,
    "http-multipart": HttpMultipart,
    "tutorial-file": TutorialFile,
    "tutorial-b64": TutorialB64,
    "tutorial-grpc": TutorialGrpc,
    "peer-multipart": PeerMultipart,
}


def open_mode(name: str, address: str, work: Workload) -> Mode:
    """A ready-to-send mode against ``address`` (HOST:PORT or base URL, as MODES says); call inside the loop."""
    try:
        mode_class = _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; known: {', '.join(MODES)}") from None
    mode: Mode = mode_class(address, work)
    return mode
