"""Tracing's configuration: the standard OTEL_* variables (and flags), off by default, bounded at every turn."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from service.metrics import TRACE_SPANS_DROPPED
from service.settings import Settings, add_settings_arguments, settings_from_args
from service.tracing import SHUTDOWN_TIMEOUT_S, _endpoint, configure


def _dropped(reason: str) -> float:
    return TRACE_SPANS_DROPPED.labels(reason)._value.get()


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),  # the default endpoint, localhost
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
])
def test_tracing_is_off_unless_the_otel_variables_switch_it_on(
    env: dict[str, str], on: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.tracing is on
    tracing = configure(settings, "classify")
    assert (tracing is not None) is on
    if tracing is not None:
        tracing.shutdown()


def test_the_standard_variables_configure_it_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    settings = settings_from_args(parser.parse_args(["--otel-service-name", "from-flag"]))
    assert (settings.otel_exporter_otlp_protocol, settings.otel_service_name) == ("grpc", "from-flag")
    assert (settings.otel_traces_sampler, settings.otel_traces_sampler_arg) == ("parentbased_traceidratio", 0.25)
    assert settings.otel_bsp_max_queue_size == 100
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")  # the signal's own variable wins
    assert Settings().otel_exporter_otlp_protocol == "http/protobuf"


@pytest.mark.parametrize("env", [
    {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
    {"OTEL_TRACES_SAMPLER": "sometimes"},
    {"OTEL_TRACES_SAMPLER_ARG": "2"},
    {"OTEL_BSP_MAX_QUEUE_SIZE": "0"},
])
def test_a_bad_value_is_refused_naming_the_variable(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="OTEL_"):
        Settings()


@pytest.mark.parametrize(("settings", "expected"), [
    ({"otel_exporter_otlp_endpoint": "http://c:4318/"}, "http://c:4318/v1/traces"),
    ({"otel_exporter_otlp_endpoint": "http://c:4318", "otel_exporter_otlp_traces_endpoint": "http://t:1/x"}, "http://t:1/x"),
    ({"otel_exporter_otlp_endpoint": "http://c:4317", "otel_exporter_otlp_protocol": "grpc"}, "http://c:4317"),
    ({}, None),
])
def test_the_traces_url_is_derived_as_the_specification_says(settings: dict[str, str], expected: str | None) -> None:
    assert _endpoint(Settings(**settings)) == expected  # type: ignore[arg-type]


class _Blocking(SpanExporter):
    """An exporter stuck on a collector that never answers, until it is shut down."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.released.wait(30)
        self.exported += len(spans)
        return SpanExportResult.FAILURE

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.released.set()


def test_a_stuck_collector_costs_the_caller_nothing_and_the_drops_are_counted() -> None:
    """Spans beyond the queue are dropped (counted), ending a span never waits, shutdown gives up in time."""
    exporter = _Blocking()
    settings = Settings(otel_traces_exporter="otlp", otel_bsp_max_queue_size=4, otel_bsp_max_export_batch_size=2,
                        otel_bsp_schedule_delay=10)
    tracing = configure(settings, "classify", exporter)
    assert tracing is not None
    tracer = tracing.provider.get_tracer("test")
    full, failed, at_shutdown = _dropped("queue_full"), _dropped("export_failed"), _dropped("shutdown")
    started = time.perf_counter()
    for _ in range(50):
        tracer.start_span("s").end()
    ended_in = time.perf_counter() - started
    assert ended_in < 0.5, f"50 spans took {ended_in:.2f} s to end"
    assert _dropped("queue_full") - full >= 40
    started = time.perf_counter()
    tracing.shutdown()
    assert time.perf_counter() - started < SHUTDOWN_TIMEOUT_S + 1.0
    # What was being exported failed, what was still queued is counted as lost at shutdown.
    assert (_dropped("export_failed") - failed) + (_dropped("shutdown") - at_shutdown) >= 1


def test_a_batch_span_is_sampled_exactly_when_a_request_it_serves_is() -> None:
    """Whatever the sampler keeps, a batch (a root with links) follows the requests it links to."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracing = configure(
        Settings(otel_traces_exporter="otlp", otel_traces_sampler="traceidratio", otel_traces_sampler_arg=0.0),
        "classify", InMemorySpanExporter(),
    )
    assert tracing is not None
    tracer = tracing.provider.get_tracer("test")
    assert not tracer.start_span("request").get_span_context().trace_flags.sampled  # ratio 0 keeps no request
    sampled = trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    unsampled = trace.SpanContext(3, 4, is_remote=True, trace_flags=trace.TraceFlags(0))
    empty = trace.set_span_in_context(trace.INVALID_SPAN)
    with_one = tracer.start_span("batch", context=empty, links=[trace.Link(unsampled), trace.Link(sampled)])
    with_none = tracer.start_span("batch", context=empty, links=[trace.Link(unsampled)])
    assert with_one.get_span_context().trace_flags.sampled
    assert not with_none.get_span_context().trace_flags.sampled
    assert "LinkedBatch" in tracing.provider.sampler.get_description()
    tracing.shutdown()
