"""The one table from core errors to gRPC status codes."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from grpc_status import rpc_status

from service.contract.status import error_status
from service.errors import INTERNAL_MESSAGE, ErrorCode, Internal, ServiceError

logger = logging.getLogger(__name__)

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
}


def as_service_error(error: Exception) -> ServiceError:
    """ServiceErrors pass; anything else is logged with its traceback and becomes a generic INTERNAL."""
    if isinstance(error, ServiceError):
        return error
    logger.error("unhandled error in a gRPC call", exc_info=error)
    return Internal(INTERNAL_MESSAGE)


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


async def abort(
    context: grpc.aio.ServicerContext, error: ServiceError, trailers: tuple[tuple[str, str], ...] = ()
) -> None:
    """End the call with the error's status and ``trailers``; the rich status (google.rpc.Status) carries its
    RetryInfo, if any."""
    status = rpc_status.to_status(error_status(error))
    await context.abort_with_status(
        _Status(status.code, status.details, (*status.trailing_metadata, *trailers))
    )
