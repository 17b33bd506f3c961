"""Log lines carry the current span's trace_id and span_id, so logs and traces join."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service.logs import configure_logging
from tests.unit.tracing.conftest import Traced, hex_id


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_records_in_a_span_name_it_and_others_do_not(spans: Traced, log_format: str, restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", log_format, stream, trace_ids=True)  # type: ignore[arg-type]
    log = logging.getLogger("classify.test")
    with spans.tracing.provider.get_tracer("test").start_as_current_span("request") as span:
        log.info("inside")
    log.info("outside")
    inside, outside = stream.getvalue().splitlines()
    trace_id, span_id = hex_id(span.get_span_context().trace_id, 32), hex_id(span.get_span_context().span_id, 16)
    if log_format == "json":
        assert (json.loads(inside)["trace_id"], json.loads(inside)["span_id"]) == (trace_id, span_id)
        assert "trace_id" not in json.loads(outside)
    else:
        assert f"trace_id={trace_id} span_id={span_id}] inside" in inside
        assert "trace_id" not in outside


def test_without_tracing_records_carry_no_trace_fields(spans: Traced, restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    with spans.tracing.provider.get_tracer("test").start_as_current_span("request"):
        logging.getLogger("classify.test").info("inside")
    assert "trace_id" not in json.loads(stream.getvalue())
