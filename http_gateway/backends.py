"""Where the gateway sends request messages: the ``RpcBackend`` protocol, and a remote gRPC server.

The in-process backend (the API objects of `classify serve`) is service/api/dispatch.py:
the gateway never imports the core.
"""

from __future__ import annotations

from typing import Protocol

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.contract.services import model_health_service
from service.contract.status import DETAILS_TRAILER, retry_after
from service.errors import ErrorCode, NotFound, RemoteError, ServiceError
from service.tracing import Tracing


class RpcBackend(Protocol):
    """Calls one unary RPC with a request message and returns the response message."""

    async def call(self, method: MethodDescriptor, request: Message, timeout: float | None) -> Message: ...

    async def ready(self, model: str = "") -> bool:
        """Whether the server (or, given a name, that model) is ready to serve; NotFound for an unknown model."""
        ...

    async def close(self) -> None: ...


class GrpcUpstreamBackend:
    """Forwards calls to a remote `classify serve` over gRPC (grpc-gateway style).

    With ``tracing``, each call gets a CLIENT span under the HTTP request's span and
    carries its W3C trace context upstream, so a request through the gateway is one
    trace across both processes.
    """

    def __init__(self, target: str, max_message_bytes: int, tracing: Tracing | None = None) -> None:
        self._target = target
        self._tracing = tracing
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._rpcs: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    def _rpc(self, method: MethodDescriptor) -> grpc.aio.UnaryUnaryMultiCallable:
        """One multi-callable per RPC, made on first use and reused (not per request)."""
        rpc = self._rpcs.get(method.full_name)
        if rpc is None:
            rpc = self._channel.unary_unary(
                f"/{method.containing_service.full_name}/{method.name}",
                request_serializer=GetMessageClass(method.input_type).SerializeToString,
                response_deserializer=GetMessageClass(method.output_type).FromString,
            )
            self._rpcs[method.full_name] = rpc
        return rpc

    async def call(self, method: MethodDescriptor, request: Message, timeout: float | None) -> Message:
        rpc = self._rpc(method)
        if self._tracing is not None:
            return await self._traced_call(rpc, method, request, timeout, self._tracing)
        try:
            return await rpc(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise _service_error(error) from None

    async def _traced_call(
        self, rpc: grpc.aio.UnaryUnaryMultiCallable, method: MethodDescriptor, request: Message,
        timeout: float | None, tracing: Tracing,
    ) -> Message:
        path = f"/{method.containing_service.full_name}/{method.name}"
        with tracing.grpc_client_span(path, self._target) as (span, metadata):
            try:
                response = await rpc(request, timeout=timeout, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                tracing.set_grpc_status(span, error.code().name, error.code().value[0], error.details() or "")
                raise _service_error(error) from None
            tracing.set_grpc_status(span, "OK", 0)
            return response

    async def ready(self, model: str = "") -> bool:
        service = model_health_service(model) if model else ""
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.aio.AioRpcError as error:
            if model and error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"model {model!r} is not served") from None
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def close(self) -> None:
        await self._channel.close()


def _service_error(error: grpc.aio.AioRpcError) -> ServiceError:
    """The upstream's status as the core's vocabulary, its retry advice (google.rpc.RetryInfo) kept as data."""
    message = error.details() or error.code().name
    try:
        code = ErrorCode(error.code().value[0])
    except ValueError:  # codes the core never raises (UNKNOWN, ABORTED...)
        code = ErrorCode.INTERNAL
    details = dict(error.trailing_metadata() or ()).get(DETAILS_TRAILER)
    delay = retry_after(status_pb2.Status.FromString(details)) if isinstance(details, bytes) else None
    return RemoteError(code, message, delay)
