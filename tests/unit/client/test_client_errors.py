"""The Python client's error and retry logic: retry policy, HTTP errors, gRPC's rich status, what it declares."""

from __future__ import annotations

import grpc
import pytest

import classify_client
from classify.v1 import classify_pb2 as pb
from classify_client import ClassifyError, RetryPolicy


def test_retry_policy_backs_off_honours_retry_after_and_the_deadline() -> None:
    """Only UNAVAILABLE and overload are retried, exponentially, never past the bound or the deadline."""
    policy = RetryPolicy(max_attempts=4, initial_backoff_s=0.1, max_backoff_s=0.3, jitter=0.0)
    unavailable = ClassifyError("UNAVAILABLE", "loading")
    assert [policy.delay(a, unavailable, None) for a in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.3, None])
    assert policy.delay(1, ClassifyError("RESOURCE_EXHAUSTED", "queue full", retry_after=1.5), None) == 1.5
    assert policy.delay(1, ClassifyError("RESOURCE_EXHAUSTED", "image too large"), None) is None
    assert policy.delay(1, ClassifyError("INVALID_ARGUMENT", "bad"), None) is None
    assert policy.delay(1, unavailable, 0.05) is None  # would sleep past the deadline


def test_http_errors_without_a_status_body_and_overload_hints() -> None:
    """A 429's Retry-After makes it retryable; a body that is no google.rpc.Status maps from the HTTP status."""
    import httpx

    from classify_client.client import error_from_http

    shed = error_from_http(httpx.Response(429, headers={"retry-after": "2"}, json={"code": 8, "message": "queue full"}))
    assert (shed.code, shed.message, shed.retry_after, shed.retryable) == ("RESOURCE_EXHAUSTED", "queue full", 2.0, True)
    too_big = error_from_http(httpx.Response(413, json={"code": 8, "message": "too large", "details": []}))
    assert too_big.code == "RESOURCE_EXHAUSTED" and not too_big.retryable
    proxy = error_from_http(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert proxy.code == "UNAVAILABLE" and proxy.retryable and proxy.http_status == 502


def test_grpc_retry_advice_is_read_from_the_rich_status() -> None:
    """google.rpc.RetryInfo in grpc-status-details-bin (as the server sends it) becomes retry_after."""
    from classify_client.client import _grpc_error
    from service.contract.status import DETAILS_TRAILER, error_status
    from service.errors import Overloaded, PayloadTooLarge

    class Call(grpc.RpcError):  # the shape of a failed call: code, details, trailing metadata
        def __init__(self, status: object) -> None:
            self._trailers = ((DETAILS_TRAILER, status.SerializeToString()),)  # type: ignore[attr-defined]

        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return "message"

        def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
            return self._trailers

    shed = _grpc_error(Call(error_status(Overloaded("busy", retry_after=1.5))))
    assert (shed.code, shed.retry_after, shed.retryable) == ("RESOURCE_EXHAUSTED", 1.5, True)
    too_big = _grpc_error(Call(error_status(PayloadTooLarge("too big"))))
    assert too_big.retry_after is None and not too_big.retryable


def test_the_client_states_the_api_it_speaks() -> None:
    """The distribution's major version is the N of the classify.vN package its generated code speaks."""
    assert classify_client.API_PACKAGE == pb.DESCRIPTOR.package == "classify.v1"
    assert classify_client.__version__.split(".")[0] == classify_client.API_PACKAGE.removeprefix("classify.v")
