"""Core errors as ``google.rpc.Status``: gRPC's rich status, per-item errors of batch and stream answers,
HTTP error bodies, and back (the gateway's upstream)."""

from __future__ import annotations

import math

from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from service.errors import ServiceError

# The trailer that carries a serialized google.rpc.Status (gRPC's rich error model).
DETAILS_TRAILER = "grpc-status-details-bin"


def error_status(error: ServiceError) -> status_pb2.Status:
    """The error as google.rpc.Status: canonical code, message, and google.rpc.RetryInfo when a retry may succeed."""
    status = status_pb2.Status(code=int(error.code), message=error.message)
    if error.retry_after is not None:
        seconds = max(0.0, error.retry_after)
        delay = duration_pb2.Duration(seconds=int(seconds), nanos=int(round((seconds % 1) * 1e9)))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
    return status


def retry_after(status: status_pb2.Status) -> float | None:
    """The retry delay of a status's google.rpc.RetryInfo, in seconds; None when it carries none."""
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def retry_after_header(seconds: float) -> str:
    """HTTP's Retry-After: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
