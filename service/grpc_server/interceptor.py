"""One interceptor per call: request id, bearer auth, metrics and error mapping, in that order."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc

from service.auth import Authorizer
from service.errors import ServiceError
from service.grpc_server.errors import GRPC_STATUS, abort, as_service_error
from service.metrics import REQUEST_SECONDS, REQUESTS
from service.request_context import REQUEST_ID_HEADER, accept_request_id, request_id

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
    request id, metrics, access logs and error mapping (health and reflection do not)."""

    def __init__(self, services: Iterable[str], authorizer: Authorizer) -> None:
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
        try:
            self._authorizer.check(method, metadata.get("authorization"))
        except ServiceError as error:
            REQUESTS.labels("grpc", method, GRPC_STATUS[error.code].name).inc()
            return _denied(handler, error)
        if not method.startswith(self._prefixes):
            return handler
        rid = accept_request_id(metadata.get(REQUEST_ID_HEADER))
        return _rebuild(handler, lambda b: _unary(b, method, rid), lambda b: _streaming(b, method, rid))


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
