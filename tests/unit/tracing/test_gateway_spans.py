"""The gateway's HTTP SERVER spans (FastAPI's own telemetry): routes, W3C context, errors, what is not traced.

A stand-in backend answers the RPCs: the unit here is the gateway (httpx.ASGITransport, no sockets).
"""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from opentelemetry.trace import SpanKind, StatusCode

from classify.v1 import classify_pb2 as pb
from http_gateway.app import create_app
from service.errors import InvalidArgument, Unavailable
from tests.unit.tracing.conftest import Traced, hex_id

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
HOSTILE: list[str | bytes] = [
    "garbage",
    "00-" + "0" * 32 + "-" + PARENT_ID + "-01",  # all-zero trace id
    "ff-" + TRACE_ID + "-" + PARENT_ID + "-01",  # forbidden version
    "00-" + TRACE_ID.upper() + "-" + PARENT_ID + "-01",  # upper case hex
    VALID + "-extra",  # version 00 takes no more fields
    "00-" + "f" * 4000 + "-" + PARENT_ID + "-01",  # oversized
    VALID.replace("-", "\u00e9").encode("latin-1"),  # not ASCII (sent as raw bytes)
]


class Backend:
    """Answers Classify; an image of b"bad" is INVALID_ARGUMENT, b"down" UNAVAILABLE."""

    async def call(self, method: MethodDescriptor, request: Message, timeout: float | None) -> Message:
        image = getattr(request, "image", b"")
        if image == b"bad":
            raise InvalidArgument("image could not be decoded")
        if image == b"down":
            raise Unavailable("the model is still loading")
        return pb.ClassifyResponse(model="stub")

    async def ready(self, model: str = "") -> bool:
        return True

    async def close(self) -> None:
        return None


def _post(spans: Traced | None, image: bytes, headers: dict[str, str] | None = None, path: str = "/v1/classify") -> int:
    app = create_app(Backend(), max_request_bytes=1 << 20, request_timeout_s=5,  # type: ignore[arg-type]
                     tracing=spans.tracing if spans else None)

    async def send() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            response = await client.post(path, json={"image": base64.b64encode(image).decode()}, headers=headers or {})
            return response.status_code

    return asyncio.run(send())


def _get(spans: Traced, *paths: str) -> None:
    app = create_app(Backend(), max_request_bytes=1 << 20, request_timeout_s=5, tracing=spans.tracing)  # type: ignore[arg-type]

    async def send() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            for path in paths:
                assert (await client.get(path)).status_code == 200, path

    asyncio.run(send())


def test_a_request_is_one_server_span_named_by_its_route(spans: Traced) -> None:
    assert _post(spans, b"img", {"x-request-id": "rid-1"}) == 200
    (span,) = spans.spans()
    assert (span.name, span.kind) == ("POST /v1/classify", SpanKind.SERVER)
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/v1/classify"
    assert span.attributes["http.request.method"] == "POST"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["classify.request_id"] == "rid-1"
    assert span.status.status_code is StatusCode.UNSET and span.parent is None


def test_the_callers_traceparent_is_the_parent(spans: Traced) -> None:
    assert _post(spans, b"img", {"traceparent": VALID, "tracestate": "vendor=value"}) == 200
    (span,) = spans.spans()
    assert hex_id(span.context.trace_id, 32) == TRACE_ID
    assert span.parent is not None and hex_id(span.parent.span_id, 16) == PARENT_ID
    assert span.context.trace_state.get("vendor") == "value"


@pytest.mark.parametrize("traceparent", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_traceparent_starts_a_fresh_trace(
    spans: Traced, traceparent: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed or oversized: the call succeeds, quickly, in a new trace, and the log does not quote it."""
    headers = {"traceparent": traceparent, "tracestate": "x" * 8000 + "=1," * 50}
    started = time.perf_counter()
    assert _post(spans, b"img", headers) == 200  # type: ignore[arg-type]
    assert time.perf_counter() - started < 2
    (span,) = spans.spans()
    assert span.parent is None and hex_id(span.context.trace_id, 32) != TRACE_ID
    assert "xxxxxxxx" not in caplog.text and "f" * 100 not in caplog.text


def test_a_hostile_tracestate_is_dropped_and_the_call_keeps_its_parent(spans: Traced) -> None:
    hostile: list[str | bytes] = ["x" * 9000, ",".join(f"k{i}=v" for i in range(40)), "bad key=1", b"k=\xff"]
    for tracestate in hostile:
        assert _post(spans, b"img", {"traceparent": VALID, "tracestate": tracestate}) == 200  # type: ignore[dict-item]
    assert len(spans.spans()) == len(hostile)
    for span in spans.spans():
        assert hex_id(span.context.trace_id, 32) == TRACE_ID and len(span.context.trace_state) == 0


@pytest.mark.parametrize(("image", "status", "code"), [(b"bad", 400, "INVALID_ARGUMENT"), (b"down", 503, "UNAVAILABLE")])
def test_an_error_sets_the_status_the_client_gets(spans: Traced, image: bytes, status: int, code: str) -> None:
    assert _post(spans, image) == status
    (span,) = spans.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["http.response.status_code"] == status
    if status < 500:  # FastAPI rewrites 5xx statuses without a description (HTTP semantic conventions)
        assert span.status.description and span.status.description.startswith(f"{code}: ")
        assert span.attributes["error.type"] == code


def test_health_metrics_and_static_files_are_not_traced(spans: Traced) -> None:
    _get(spans, "/healthz", "/readyz", "/metrics", "/try-it/try_it.js")
    assert spans.spans() == []


def test_without_tracing_fastapi_makes_no_span(spans: Traced) -> None:
    """Tracing off: the app gets no tracer provider, so even a traceparent makes nothing."""
    assert _post(None, b"img", {"traceparent": VALID}) == 200
    assert spans.spans() == []
