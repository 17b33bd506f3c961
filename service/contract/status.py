"""Core errors as ``google.rpc.Status``: per-item errors of batch and stream answers, HTTP error bodies."""

from __future__ import annotations

from google.rpc import status_pb2

from service.errors import ServiceError


def error_status(error: ServiceError) -> status_pb2.Status:
    """The error as google.rpc.Status (canonical code + message)."""
    return status_pb2.Status(code=int(error.code), message=error.message)
