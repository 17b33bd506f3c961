"""Tracing with the SDK's in-memory exporter behind the service's own pipeline (sampler, batch processor)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.settings import Settings
from service.tracing import Tracing, configure


class Traced:
    """A Tracing whose spans land in memory; `spans()` flushes first."""

    def __init__(self, tracing: Tracing, exporter: InMemorySpanExporter) -> None:
        self.tracing = tracing
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        self.tracing.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]


def traced(**settings: object) -> Traced:
    exporter = InMemorySpanExporter()
    tracing = configure(Settings(otel_traces_exporter="otlp", **settings), "classify-test", exporter)  # type: ignore[arg-type]
    assert tracing is not None
    return Traced(tracing, exporter)


@pytest.fixture
def spans() -> Iterator[Traced]:
    result = traced()
    yield result
    result.tracing.shutdown()


def hex_id(value: int, digits: int) -> str:
    return format(value, f"0{digits}x")
