"""The core's error vocabulary, named after gRPC's canonical status codes.

Transports translate these in exactly one place each (gRPC status codes, HTTP
statuses); the numeric values are the canonical codes of ``google.rpc.Code``.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Canonical error codes (the numbering of google.rpc.Code)."""

    CANCELLED = 1
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


class ServiceError(Exception):
    """An error a client caused or must know about; its message is safe to show.

    ``retry_after``: seconds after which the same call may succeed, or None when
    retrying cannot help. Transports send it as data (google.rpc.RetryInfo in the
    status details, HTTP Retry-After) and never look at the Python type.
    """

    code: ErrorCode = ErrorCode.INTERNAL
    retry_after: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Cancelled(ServiceError):
    """The client went away; nobody reads the answer (HTTP 499)."""

    code = ErrorCode.CANCELLED


class InvalidArgument(ServiceError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = ErrorCode.NOT_FOUND


class PayloadTooLarge(ServiceError):
    """An input is larger than a configured limit: retrying the same call cannot help (HTTP 413)."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class Overloaded(ServiceError):
    """The server sheds load; the client may retry after ``retry_after`` seconds (HTTP 429)."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemoteError(ServiceError):
    """An error status a remote server answered (the gateway's upstream), passed through with its retry advice."""

    def __init__(self, code: ErrorCode, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class DeadlineExceeded(ServiceError):
    code = ErrorCode.DEADLINE_EXCEEDED


class FailedPrecondition(ServiceError):
    """The call is valid but the server is not in a state to do it (e.g. model control is off)."""

    code = ErrorCode.FAILED_PRECONDITION


class Unimplemented(ServiceError):
    """The call exists in a protocol this server speaks, but this server does not implement it."""

    code = ErrorCode.UNIMPLEMENTED


class Unavailable(ServiceError):
    code = ErrorCode.UNAVAILABLE


class Unauthenticated(ServiceError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    """The caller is known but may not make this call (model control without an admin token)."""

    code = ErrorCode.PERMISSION_DENIED


class Internal(ServiceError):
    code = ErrorCode.INTERNAL


INTERNAL_MESSAGE = "internal error; the server log has the details"
"""What clients see for any unexpected exception: never a stack trace."""


class StartupError(Exception):
    """The service cannot start (bad weights, bad configuration); the message says how to fix it."""
