"""OpenTelemetry tracing of a process: the SDK set up from the OTEL_* settings, and the transports' spans.

`configure` imports the SDK only when the settings switch tracing on (service/settings.py:
an exporter named, or an OTLP endpoint given) and returns None otherwise; the transports
and the core then hold no tracing object and do no tracing work per call. When it is on:

- spans go through a bounded queue to the exporter's own thread: a slow or unreachable
  collector never blocks a request, spans that do not fit are dropped and counted
  (classify_trace_spans_dropped_total), and `Tracing.shutdown` gives up after
  SHUTDOWN_TIMEOUT_S, so a missing collector cannot stretch a drain;
- W3C `traceparent` / `tracestate` are read from HTTP headers (FastAPI's own telemetry)
  and gRPC metadata (`grpc_server_span`) and written by the gateway's upstream calls
  (`grpc_client_span`); a malformed or oversized value starts a fresh trace;
- a batch span, which is a root linked to the requests it served, is sampled exactly
  when one of those requests is (`_LinkedBatchSampler`), whatever OTEL_TRACES_SAMPLER says.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any

from service.metrics import TRACE_SPANS_DROPPED
from service.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Span

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 1.0
SERVE_SERVICE_NAME = "classify"
GATEWAY_SERVICE_NAME = "classify-gateway"
# These log a warning that quotes a malformed traceparent / tracestate: a hostile client could fill the log.
_QUIET_LOGGERS = ("opentelemetry.trace.span", "opentelemetry.trace.propagation.tracecontext")


class Tracing:
    """This process's tracer provider (the SDK's) and the spans the transports make with it."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import propagate, trace

        self.provider = provider
        self._trace = trace
        self._propagate = propagate
        self._server = provider.get_tracer("classify.grpc")
        self._client = provider.get_tracer("classify.gateway")

    @contextlib.contextmanager
    def grpc_server_span(self, method: str, metadata: Mapping[str, str], peer: str, request_id: str) -> Iterator[Span]:
        """The SERVER span of one gRPC call (``/package.Service/Method``), current while the call runs.

        Its parent is the caller's W3C trace context from ``metadata``, when valid.
        The caller sets the outcome with `set_grpc_status`.
        """
        trace = self._trace
        full_name = method[1:]
        service = full_name.partition("/")[0]
        attributes: dict[str, Any] = {
            # Both generations of the RPC conventions: rpc.system.name, rpc.method (full name) and
            # rpc.response.status_code are current; rpc.system, rpc.service and rpc.grpc.status_code are
            # what most backends still query.
            "rpc.system": "grpc", "rpc.system.name": "grpc", "rpc.service": service, "rpc.method": full_name,
            "classify.request_id": request_id,
        }
        attributes.update(_peer_attributes(peer))
        span = self._server.start_span(
            full_name, context=self._propagate.extract(metadata), kind=trace.SpanKind.SERVER, attributes=attributes
        )
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            yield span

    def set_grpc_status(self, span: Span, code: str, number: int, message: str = "") -> None:
        """The call's outcome as its client sees it: ``code`` (OK, INVALID_ARGUMENT...) and its number."""
        span.set_attributes({"rpc.response.status_code": code, "rpc.grpc.status_code": number})
        if code != "OK":
            set_error(span, code, message)

    @contextlib.contextmanager
    def grpc_client_span(self, method: str, target: str) -> Iterator[tuple[Span, list[tuple[str, str]]]]:
        """A CLIENT span for a call to ``method`` (``/package.Service/Method``) and the metadata that continues it."""
        trace = self._trace
        full_name = method[1:]
        host, _, port = target.rpartition(":")
        attributes: dict[str, Any] = {
            "rpc.system": "grpc", "rpc.system.name": "grpc", "rpc.service": full_name.partition("/")[0],
            "rpc.method": full_name, "server.address": host or target,
        }
        if port.isdigit():
            attributes["server.port"] = int(port)
        span = self._client.start_span(full_name, kind=trace.SpanKind.CLIENT, attributes=attributes)
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier)
            yield span, list(carrier.items())

    def shutdown(self) -> None:
        """Export what is queued, waiting at most SHUTDOWN_TIMEOUT_S; what is left is dropped and counted."""
        self.provider.shutdown()


def set_error(span: Span, code: str, message: str) -> None:
    """Mark ``span`` failed with the canonical ``code`` its client gets (INVALID_ARGUMENT...) and the message."""
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, f"{code}: {message}" if message else code))
    span.set_attribute("error.type", code)


def _peer_attributes(peer: str) -> dict[str, Any]:
    """network.peer.* from grpc's peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, ``unix:...``)."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return {}
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return {}
    return {"network.peer.address": host.strip("[]"), "network.peer.port": int(port)}


def configure(settings: Settings, default_service_name: str, exporter: SpanExporter | None = None) -> Tracing | None:
    """The SDK set up from ``settings`` (OTEL_*); None, importing nothing, while tracing is off.

    ``exporter`` replaces the one the settings name (tests pass the SDK's in-memory exporter).
    """
    if not settings.tracing:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    resource = Resource.create({
        "service.name": settings.otel_service_name or default_service_name,
        "service.version": _version(),
    })
    provider = TracerProvider(resource=resource, sampler=_sampler(settings), shutdown_on_exit=False)
    provider.add_span_processor(_processor(settings, _counting(exporter) if exporter else _exporter(settings)))
    logger.info(
        "tracing on: %s spans to %s (%s), sampler %s",
        resource.attributes["service.name"], _where(settings), settings.otel_traces_exporter or "otlp",
        provider.sampler.get_description(),
    )
    return Tracing(provider)


def _version() -> str:
    try:
        return package_metadata.version("classify-service")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def _where(settings: Settings) -> str:
    if settings.otel_traces_exporter == "console":
        return "stdout"
    return f"{_endpoint(settings) or 'the default endpoint'} over {settings.otel_exporter_otlp_protocol}"


def _endpoint(settings: Settings) -> str | None:
    """The OTLP traces URL as the specification derives it: the signal's own URL, else the base + /v1/traces (HTTP)."""
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    base = settings.otel_exporter_otlp_endpoint
    if base and settings.otel_exporter_otlp_protocol == "http/protobuf":
        return base.rstrip("/") + "/v1/traces"
    return base


def _exporter(settings: Settings) -> SpanExporter:
    """OTLP over gRPC or HTTP (headers, certificates, compression and timeout from the OTEL_* environment), or stdout."""
    if settings.otel_traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter: SpanExporter = ConsoleSpanExporter(service_name=settings.otel_service_name)
    elif settings.otel_exporter_otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter(endpoint=_endpoint(settings))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(endpoint=_endpoint(settings))
    return _counting(exporter)


def _counting(exporter: SpanExporter) -> SpanExporter:
    """``exporter``, counting the spans of every failed export as dropped."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class CountingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            result = exporter.export(spans)
            if result is not SpanExportResult.SUCCESS:
                TRACE_SPANS_DROPPED.labels("export_failed").inc(len(spans))
            return result

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            if _takes_timeout(exporter):  # the OTLP exporters: abandon retries, close within the time left
                exporter.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
            else:
                exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return exporter.force_flush(timeout_millis)

    return CountingExporter()


def _takes_timeout(exporter: SpanExporter) -> bool:
    import inspect

    return "timeout_millis" in inspect.signature(exporter.shutdown).parameters


def _processor(settings: Settings, exporter: SpanExporter) -> Any:
    """The SDK's batch processor (a bounded queue and an export thread) that counts what it drops."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class CountingBatchSpanProcessor(BatchSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            batch = self._batch_processor
            # The SDK drops the oldest span when its queue is full (and logs it, once per 20 s).
            if span.context is not None and span.context.trace_flags.sampled and _queue_length(batch) >= batch._max_queue_size:
                TRACE_SPANS_DROPPED.labels("queue_full").inc()
            super().on_end(span)

        def shutdown(self) -> None:
            batch = self._batch_processor
            # Waits for the export thread at most the timeout, then shuts the exporter down, which
            # abandons its retries (an unreachable collector made the SDK's own shutdown take ~8 s).
            batch.shutdown(timeout_millis=int(SHUTDOWN_TIMEOUT_S * 1000))
            if left := _queue_length(batch):
                TRACE_SPANS_DROPPED.labels("shutdown").inc(left)
                logger.warning("tracing: %d spans not exported at shutdown", left)

    return CountingBatchSpanProcessor(
        exporter,
        max_queue_size=settings.otel_bsp_max_queue_size,
        schedule_delay_millis=settings.otel_bsp_schedule_delay,
        max_export_batch_size=min(settings.otel_bsp_max_export_batch_size, settings.otel_bsp_max_queue_size),
    )


def _queue_length(batch: Any) -> int:
    return len(batch._queue)


def _sampler(settings: Settings) -> Any:
    """OTEL_TRACES_SAMPLER (and its argument), with batch spans following the requests they serve."""
    from opentelemetry.sdk.trace import sampling

    ratio = settings.otel_traces_sampler_arg
    samplers = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return _linked_batch_sampler(samplers[settings.otel_traces_sampler]())


def _linked_batch_sampler(delegate: Any) -> Any:
    """Root spans with links (batches) are sampled when a linked span is; every other span as ``delegate`` says."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class LinkedBatchSampler(Sampler):
        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, kind: Any = None, attributes: Any = None,
            links: Sequence[Any] | None = None, trace_state: Any = None,
        ) -> SamplingResult:
            if links and not trace.get_current_span(parent_context).get_span_context().is_valid:
                sampled = any(link.context.trace_flags.sampled for link in links)
                return SamplingResult(Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP, attributes)
            return delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"LinkedBatch{{{delegate.get_description()}}}"

    return LinkedBatchSampler()
