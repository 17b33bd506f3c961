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


class RpcBackend(Protocol):
    """Calls one unary RPC with a request message and returns the response message."""

    async def call(self, method: MethodDescriptor, request: Message, timeout: float | None) -> Message: ...

    async def ready(self, model: str = "") -> bool:
        """Whether the server (or, given a name, that model) is ready to serve; NotFound for an unknown model."""
        ...

    async def close(self) -> None: ...


class GrpcUpstreamBackend:
    """Forwards calls to a remote `classify serve` over gRPC (grpc-gateway style)."""

    def __init__(self, target: str, max_message_bytes: int) -> None:
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
        try:
            return await rpc(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise _service_error(error) from None

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
