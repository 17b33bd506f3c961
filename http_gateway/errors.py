"""The one table from core errors to HTTP statuses, and the handlers that apply it.

Bodies are ``google.rpc.Status`` in proto3 JSON (``code``, ``message``,
``details``), as grpc-gateway and Google APIs answer; never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.contract.status import error_status, retry_after_header
from service.errors import (
    INTERNAL_MESSAGE,
    ErrorCode,
    Internal,
    InvalidArgument,
    NotFound,
    ServiceError,
)
from service.tracing import set_error

logger = logging.getLogger(__name__)

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.CANCELLED: 499,
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.RESOURCE_EXHAUSTED: 413,  # a limit retrying cannot pass; with retry advice it is 429 (below)
    ErrorCode.FAILED_PRECONDITION: 400,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNAUTHENTICATED: 401,
}
# RESOURCE_EXHAUSTED that a retry may pass (load shedding, with retry advice): Too Many Requests.
RETRYABLE_EXHAUSTED = 429
OIP_PREFIX = "/v2"


def http_status(error: ServiceError) -> int:
    """The table's status; RESOURCE_EXHAUSTED with retry advice (shed load) is 429, without it (too large) 413."""
    if error.code == ErrorCode.RESOURCE_EXHAUSTED and error.retry_after is not None:
        return RETRYABLE_EXHAUSTED
    return HTTP_STATUS[error.code]


def is_oip_path(path: str) -> bool:
    """Paths of the Open Inference Protocol's REST API, whose error body is its own."""
    return path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")


def error_response(error: ServiceError, path: str = "") -> JSONResponse:
    """The error as JSON: ``{"error": message}`` under /v2 (the OIP's form), else google.rpc.Status."""
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = retry_after_header(error.retry_after)
    if error.code == ErrorCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    span = trace.get_current_span()  # the request's SERVER span, when it is traced
    if span.is_recording():
        set_error(span, error.code.name, error.message)
    body: dict[str, Any]
    if is_oip_path(path):
        body = {"error": error.message}
    else:
        body = json_format.MessageToDict(error_status(error), always_print_fields_with_no_presence=True)
    return JSONResponse(body, status_code=http_status(error), headers=headers)


def _framework_error(status: int, detail: str) -> ServiceError:
    """Errors raised by Starlette itself (unknown route, wrong method) in our vocabulary."""
    if status == 404:
        return NotFound(detail)
    if 400 <= status < 500:
        error = InvalidArgument(detail)
        return error
    return Internal(INTERNAL_MESSAGE)


def install_error_handlers(app: FastAPI) -> None:
    async def on_service_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ServiceError)
        return error_response(error, request.url.path)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        return error_response(InvalidArgument(f"invalid request: {problems}"), request.url.path)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        response = error_response(_framework_error(error.status_code, str(error.detail)), request.url.path)
        response.status_code = error.status_code  # keep 405, 404... as Starlette decided
        return response

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(Internal(INTERNAL_MESSAGE), request.url.path)

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
