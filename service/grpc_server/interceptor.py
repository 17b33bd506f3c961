"""One interceptor per call: its span (when tracing is on), request id, bearer auth, metrics and error mapping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc

from service.auth import Authorizer
from service.contract.services import PROBE_METHODS
from service.errors import ServiceError
from service.grpc_server.errors import GRPC_STATUS, abort, as_service_error
from service.metrics import REQUEST_SECONDS, REQUESTS
from service.request_context import REQUEST_ID_HEADER, accept_request_id, request_id
from service.tracing import Tracing

logger = logging.getLogger("classify.access")

Behavior = Callable[..., Any]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


def _rebuild(handler: grpc.RpcMethodHandler, unary: Callable[[Behavior], Behavior], streaming: Callable[[Behavior], Behavior]) -> grpc.RpcMethodHandler:
    codec = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **codec)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **codec)


def _denied(handler: grpc.RpcMethodHandler, error: ServiceError) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort(context, error)

    return _rebuild(handler, lambda _: deny, lambda _: deny)


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Every call: the access table's check (service/contract/access.py); calls of ``services`` also get a
    request id, metrics, access logs and error mapping (health and reflection do not).

    With ``tracing``, each call of ``services`` (denied ones too) runs inside its SERVER span;
    probes (health, the OIP's liveness and readiness) and reflection are never traced.
    """

    def __init__(self, services: Iterable[str], authorizer: Authorizer, tracing: Tracing | None = None) -> None:
        self._tracing = tracing
        self._prefixes = tuple(f"/{name}/" for name in services)
        self._authorizer = authorizer

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        served = method.startswith(self._prefixes)
        rid = accept_request_id(metadata.get(REQUEST_ID_HEADER)) if served else ""
        try:
            self._authorizer.check(method, metadata.get("authorization"))
        except ServiceError as error:
            REQUESTS.labels("grpc", method, GRPC_STATUS[error.code].name).inc()
            handler = _denied(handler, error)
            if self._tracing is None or not served or method in PROBE_METHODS:
                return handler
            return _traced(handler, self._tracing, method, metadata, rid)
        if not served:
            return handler
        handler = _rebuild(handler, lambda b: _unary(b, method, rid), lambda b: _streaming(b, method, rid))
        if self._tracing is None or method in PROBE_METHODS:
            return handler
        return _traced(handler, self._tracing, method, metadata, rid)


def _traced(
    handler: grpc.RpcMethodHandler, tracing: Tracing, method: str, metadata: dict[str, str], rid: str
) -> grpc.RpcMethodHandler:
    """``handler`` inside the call's SERVER span, whose status is the one the client gets."""

    def outcome(span: Any, context: grpc.aio.ServicerContext, cancelled: bool) -> None:
        code = grpc.StatusCode.CANCELLED if cancelled else context.code() or grpc.StatusCode.OK
        tracing.set_grpc_status(span, code.name, code.value[0], context.details() or "")

    def unary(behavior: Behavior) -> Behavior:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with tracing.grpc_server_span(method, metadata, context.peer(), rid) as span:
                cancelled = False
                try:
                    return await behavior(request, context)
                except asyncio.CancelledError:
                    cancelled = True
                    raise
                finally:
                    outcome(span, context, cancelled)

        return call

    def streaming(behavior: Behavior) -> Behavior:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with tracing.grpc_server_span(method, metadata, context.peer(), rid) as span:
                cancelled = False
                try:
                    async for response in behavior(request, context):
                        yield response
                except asyncio.CancelledError:
                    cancelled = True
                    raise
                finally:
                    outcome(span, context, cancelled)

        return call

    return _rebuild(handler, unary, streaming)


def _start(rid: str) -> float:
    request_id.set(rid)
    return time.perf_counter()


async def _send_headers(context: grpc.aio.ServicerContext, rid: str) -> None:
    """Response headers (with the request id) go out with the first answer, never before.

    Until then the call has sent nothing, so a proxy may still retry it elsewhere: an
    error is a Trailers-Only response (Envoy retries a gRPC status only from one,
    envoyproxy/envoy#17629), and a replica that dies mid-call has sent no headers
    (Envoy retries a reset only before them). Errors carry the request id in trailers.
    """
    await context.send_initial_metadata(((REQUEST_ID_HEADER, rid),))


def _finish(method: str, code: grpc.StatusCode, started: float) -> None:
    elapsed = time.perf_counter() - started
    REQUESTS.labels("grpc", method, code.name).inc()
    REQUEST_SECONDS.labels("grpc", method).observe(elapsed)
    logger.info("grpc %s -> %s in %.1f ms", method, code.name, 1000 * elapsed)


def _unary(behavior: Behavior, method: str, rid: str) -> Behavior:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = _start(rid)
        try:
            response = await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 (mapped, and logged when unexpected)
            error = as_service_error(exc)
            _finish(method, GRPC_STATUS[error.code], started)
            await abort(context, error, ((REQUEST_ID_HEADER, rid),))
        await _send_headers(context, rid)
        _finish(method, grpc.StatusCode.OK, started)
        return response

    return call


def _streaming(behavior: Behavior, method: str, rid: str) -> Behavior:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = _start(rid)
        sent = False
        try:
            async for response in behavior(request, context):
                if not sent:
                    await _send_headers(context, rid)
                    sent = True
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = as_service_error(exc)
            _finish(method, GRPC_STATUS[error.code], started)
            await abort(context, error, ((REQUEST_ID_HEADER, rid),))
        if not sent:
            await _send_headers(context, rid)
        _finish(method, grpc.StatusCode.OK, started)

    return call
