"""A real OpenTelemetry collector for tests and the tracing bench: rotel, relaying to a receiver in this process.

`rotel` (PyPI) ships a collector binary, ``rotel-agent``, that receives OTLP over gRPC
and HTTP. Here it relays everything it receives, over OTLP/gRPC, to `SpanSink`, an
OTLP receiver in this process (grpcio + opentelemetry-proto), so a test can read what
the collector got. `render` draws one trace (and the batches linked to it) as text.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.harness import free_port


@dataclass(frozen=True)
class Span:
    """One received span, flattened: ids as hex, attributes as Python values."""

    service: str
    scope: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    status: str  # UNSET, OK or ERROR
    status_message: str
    attributes: dict[str, Any]
    links: tuple[tuple[str, str, dict[str, Any]], ...]  # (trace id, span id, attributes)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


class SpanSink(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC receiver that keeps every span it is sent."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(0)

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (the RPC's name)
        received = []
        for resource_spans in request.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    received.append(Span(
                        service=service, scope=scope_spans.scope.name, name=s.name,
                        kind=trace_pb2.Span.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"),
                        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_id=s.parent_span_id.hex(),
                        start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
                        status=trace_pb2.Status.StatusCode.Name(s.status.code).removeprefix("STATUS_CODE_"),
                        status_message=s.status.message, attributes=_attributes(s.attributes),
                        links=tuple((link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes)) for link in s.links),
                    ))
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    @property
    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[Span]:
        """The spans once ``predicate(spans)`` holds; AssertionError with what arrived if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans
            if predicate(spans):
                return spans
            time.sleep(0.2)
        spans = self.spans
        raise AssertionError(f"collector did not get the expected spans in {timeout} s; got {len(spans)}: "
                             f"{sorted({(s.service, s.name) for s in spans})}")


def rotel_agent() -> Path:
    import rotel

    return Path(rotel.__file__).parent / "rotel-agent"


@dataclass
class Collector:
    """A running rotel-agent: OTLP in on ``grpc_endpoint`` and ``http_endpoint``, out to ``sink`` (or nowhere)."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    log_path: Path
    sink: SpanSink | None = None
    env_for: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self, protocol: str, **extra: str) -> dict[str, str]:
        """The OTEL_* variables (and only those) that send a process's spans here over ``protocol``."""
        endpoint = self.grpc_endpoint if protocol == "grpc" else self.http_endpoint
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export often: tests wait for spans
            **extra,
        }


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rotel-agent exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"rotel-agent not listening on {port} after {timeout} s:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def collector(work_dir: Path, relay: bool = True) -> Iterator[Collector]:
    """rotel-agent on free loopback ports; with ``relay`` its spans reach a `SpanSink`, else it discards them."""
    work_dir.mkdir(parents=True, exist_ok=True)
    sink = SpanSink() if relay else None
    if sink is not None:
        sink.start()
    grpc_port, http_port = free_port(), free_port()
    log_path = work_dir / f"rotel-{grpc_port}.log"
    exporter = (
        ["--exporter", "otlp", "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink.port}",
         "--otlp-exporter-protocol", "grpc", "--batch-timeout", "100ms"]
        if sink is not None else ["--exporter", "blackhole"]
    )
    command = [
        str(rotel_agent()), "start",
        "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}", "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
        "--pid-file", str(work_dir / f"rotel-{grpc_port}.pid"), "--log-file", str(log_path), *exporter,
    ]
    with (work_dir / f"rotel-{grpc_port}.out").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(grpc_port, process, work_dir / f"rotel-{grpc_port}.out")
        _wait_listening(http_port, process, work_dir / f"rotel-{grpc_port}.out")
        yield Collector(process, grpc_port, http_port, log_path, sink)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if sink is not None:
            sink.stop()


def render(spans: list[Span], trace_id: str) -> str:
    """One trace as an indented tree (service, span, duration, key attributes), then the batches linked to it."""
    in_trace = [s for s in spans if s.trace_id == trace_id]
    by_parent: dict[str, list[Span]] = {}
    for s in in_trace:
        by_parent.setdefault(s.parent_id, []).append(s)
    ids = {s.span_id for s in in_trace}
    roots = [s for s in in_trace if s.parent_id not in ids]
    origin = min((s.start_ns for s in in_trace), default=0)
    lines = [f"trace {trace_id}"]

    def draw(s: Span, depth: int) -> None:
        offset = (s.start_ns - origin) / 1e6
        lines.append(f"{'  ' * depth}- [{s.service}] {s.name} ({s.kind.lower()}) +{offset:.1f} ms, "
                     f"{s.duration_ms:.1f} ms{_details(s)}")
        for child in sorted(by_parent.get(s.span_id, []), key=lambda c: c.start_ns):
            draw(child, depth + 1)

    for root in sorted(roots, key=lambda r: r.start_ns):
        draw(root, 1)
    batches = [s for s in spans if any(link[1] in ids for link in s.links)]
    for batch in batches:
        linked = [link for link in batch.links if link[0] == trace_id]
        lines.append(f"linked batch: trace {batch.trace_id}")
        lines.append(f"  - [{batch.service}] {batch.name} +{(batch.start_ns - origin) / 1e6:.1f} ms, "
                     f"{batch.duration_ms:.1f} ms{_details(batch)}")
        lines.append(f"    links: {len(batch.links)} image spans ({len(linked)} of this trace, "
                     f"positions {sorted(link[2].get('classify.batch.position') for link in linked)})")
    return "\n".join(lines)


_SHOWN = (
    "http.route", "http.response.status_code", "rpc.response.status_code", "classify.model", "classify.backend",
    "classify.batch.size", "classify.batch.position", "classify.batch.release", "classify.queue.wait_ms",
)


def _details(s: Span) -> str:
    shown = {k: v for k, v in s.attributes.items() if k in _SHOWN}
    if "classify.queue.wait_ms" in shown:
        shown["classify.queue.wait_ms"] = round(float(shown["classify.queue.wait_ms"]), 1)
    status = f" status={s.status}" + (f" ({s.status_message})" if s.status_message else "") if s.status != "UNSET" else ""
    return (" " + " ".join(f"{k}={v}" for k, v in shown.items()) if shown else "") + status
