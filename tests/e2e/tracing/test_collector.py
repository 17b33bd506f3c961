"""Tracing end to end: `classify serve` and a standalone `classify gateway`, set up by OTEL_* variables alone,
export to a real OpenTelemetry collector (rotel), which relays to a receiver in this test."""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.collector import Collector, Span, collector, render
from bench.harness import REPO, GatewayProcess, ServerProcess, start_gateway, start_server
from classify_client.client import Client

CONCURRENCY = 16
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def otel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with collector(tmp_path_factory.mktemp("collector")) as running:
        yield running


@pytest.fixture(scope="module")
def traced(
    otel: Collector, weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, GatewayProcess]]:
    """The server exports over OTLP/gRPC, the gateway over OTLP/HTTP: both protocols reach the collector."""
    logs = tmp_path_factory.mktemp("traced")
    server = start_server(
        weights, logs, "--batch-max-delay-ms", "20", "--log-format", "json", env=otel.env("grpc"),
    )
    try:
        gateway = start_gateway(server.grpc_address, logs, env=otel.env("http/protobuf"))
        try:
            yield server, gateway
        finally:
            gateway.stop()
    finally:
        server.stop()


def _requests_arrived(request_ids: list[str]) -> object:
    def check(spans: list[Span]) -> bool:
        traced_ids = {s.attributes.get("classify.request_id") for s in spans}
        images = [s for s in spans if s.name == "classify.image"]
        batched = {link[1] for s in spans if s.name == "classify.batch" for link in s.links}
        clients = {s.span_id for s in spans if s.service == "classify-gateway" and s.kind == "CLIENT"}
        upstream = {s.parent_id for s in spans if s.service == "classify" and s.kind == "SERVER"}
        return (set(request_ids) <= traced_ids and len(clients) >= len(request_ids) and clients <= upstream
                and all(i.span_id in batched for i in images) and len(images) >= len(request_ids))
    return check


def test_a_request_through_the_gateway_is_one_trace_and_every_image_is_linked_from_its_batch(
    traced: tuple[ServerProcess, GatewayProcess], otel: Collector, photos: dict[str, bytes]
) -> None:
    """16 concurrent uploads through the gateway: each is one trace with spans of both services, and the batch
    span that served each image links to it, names it in the image's attributes, and batches hold several."""
    server, gateway = traced
    assert otel.sink is not None
    request_ids = [f"trace-e2e-{i}" for i in range(CONCURRENCY * 2)]
    images = list(photos.values())

    def upload(i: int) -> int:
        response = httpx.post(
            f"{gateway.http_url}/v1/classify:upload", files={"file": images[i % len(images)]},
            headers={"x-request-id": request_ids[i]}, timeout=60,
        )
        return response.status_code

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        assert list(pool.map(upload, range(len(request_ids)))) == [200] * len(request_ids)
    spans = otel.sink.wait_for(_requests_arrived(request_ids))

    by_id = {s.span_id: s for s in spans}
    batches = [s for s in spans if s.name == "classify.batch"]
    upstream_ids = []
    for rid in request_ids:
        (http_span,) = [s for s in spans if s.service == "classify-gateway" and s.attributes.get("classify.request_id") == rid]
        assert (http_span.kind, http_span.name, http_span.parent_id) == ("SERVER", "POST /v1/classify:upload", "")
        assert http_span.attributes["http.response.status_code"] == 200
        (client,) = [s for s in spans if s.parent_id == http_span.span_id]
        assert (client.service, client.kind, client.name) == (
            "classify-gateway", "CLIENT", "classify.v1.ClassifierService/Classify")
        (grpc_span,) = [s for s in spans if s.parent_id == client.span_id]
        assert (grpc_span.service, grpc_span.kind, grpc_span.name) == (
            "classify", "SERVER", "classify.v1.ClassifierService/Classify")
        assert grpc_span.trace_id == client.trace_id == http_span.trace_id  # one trace, two processes
        assert grpc_span.attributes["rpc.response.status_code"] == "OK"
        upstream_ids.append(grpc_span.attributes["classify.request_id"])
        (image,) = [s for s in spans if s.parent_id == grpc_span.span_id]
        assert image.name == "classify.image"
        assert {c.name for c in spans if c.parent_id == image.span_id} == {"classify.preprocess", "classify.queue"}
        (batch,) = [b for b in batches if any(link[1] == image.span_id for link in b.links)]
        assert image.attributes["classify.batch.span_id"] == batch.span_id
        assert image.attributes["classify.batch.trace_id"] == batch.trace_id != image.trace_id
        assert image.attributes["classify.batch.size"] == batch.attributes["classify.batch.size"]
        (link,) = [link for link in batch.links if link[1] == image.span_id]
        assert link[2]["classify.batch.position"] == image.attributes["classify.batch.position"]
        assert batch.attributes["classify.model"] == "resnet18"
        assert batch.attributes["classify.batch.release"] in {"full", "timer", "none_decoding"}
    assert max(b.attributes["classify.batch.size"] for b in batches) > 1, "concurrent requests never shared a batch"

    # A rendered example: the trace of a request that shared its batch.
    shared = next(b for b in batches if b.attributes["classify.batch.size"] > 1)
    example = by_id[shared.links[0][1]]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "example-trace.txt").write_text(render(spans, example.trace_id) + "\n")

    # Logs and traces join: the server's access line of a request names its trace and its SERVER span.
    grpc_span = next(s for s in spans if s.attributes.get("classify.request_id") == upstream_ids[0])
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("request_id") == upstream_ids[0] and line["logger"] == "classify.access"]
    assert access and access[0]["trace_id"] == grpc_span.trace_id and access[0]["span_id"] == grpc_span.span_id


def test_health_and_metrics_are_not_traced_and_batching_metrics_are_exposed(
    traced: tuple[ServerProcess, GatewayProcess], otel: Collector
) -> None:
    """/healthz, /readyz, /metrics and grpc.health.v1 make no spans; /metrics has the batching metrics."""
    server, gateway = traced
    assert otel.sink is not None
    for url in (gateway.http_url, server.http_url):
        for path in ("/healthz", "/readyz", "/metrics"):
            assert httpx.get(url + path, timeout=10).status_code == 200
    with Client(server.grpc_address) as client:
        assert client.health() == "SERVING"
    # A traced marker call, sent after the untraced ones: once it arrived, so had they.
    with Client(server.grpc_address) as client:
        client.list_models()
    spans = otel.sink.wait_for(lambda s: any(x.name.endswith("/ListModels") for x in s))
    names = {s.name for s in spans} | {str(s.attributes.get("url.path")) for s in spans}
    assert not {n for n in names if re.search(r"healthz|readyz|metrics|Health/Check", n)}, names
    metrics = httpx.get(server.http_url + "/metrics", timeout=10).text
    for name in ("classify_batch_size_bucket", "classify_queue_wait_seconds_bucket", "classify_queue_depth",
                 "classify_batch_releases_total"):
        assert re.search(rf"^{name}\{{.*model=\"resnet18\"", metrics, re.M), name


def test_the_python_client_continues_the_callers_trace(
    traced: tuple[ServerProcess, GatewayProcess], otel: Collector, photos: dict[str, bytes]
) -> None:
    """With OpenTelemetry installed and a span current, classify-client sends its context on both transports."""
    from opentelemetry.sdk.trace import TracerProvider

    server, gateway = traced
    assert otel.sink is not None
    tracer = TracerProvider().get_tracer("test")
    parents = {}
    for transport, target in (("grpc", server.grpc_address), ("http", gateway.http_url)):
        with tracer.start_as_current_span(f"caller-{transport}") as span, Client(target, transport=transport) as client:
            client.classify(photos["coffee.png"])
            parents[transport] = span.get_span_context()
    for transport, parent in parents.items():
        trace_id, span_id = format(parent.trace_id, "032x"), format(parent.span_id, "016x")
        spans = otel.sink.wait_for(lambda s, t=trace_id, p=span_id: any(x.trace_id == t and x.parent_id == p for x in s))
        (first,) = [s for s in spans if s.trace_id == trace_id and s.parent_id == span_id]
        assert first.kind == "SERVER", (transport, first)


def test_an_unreachable_collector_fails_no_request_and_does_not_stretch_the_drain(
    weights: Path, photos: dict[str, bytes], tmp_path: Path
) -> None:
    """Nothing listens at the OTLP endpoint: calls succeed, dropped spans are counted, SIGTERM still exits quickly."""
    from bench.harness import free_port

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
           "OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    server = start_server(weights, tmp_path, "--shutdown-delay-s", "0", env=env)
    try:
        with Client(server.grpc_address) as client:
            started = time.monotonic()
            for _ in range(20):
                client.classify(photos["chelsea.png"])
            elapsed = time.monotonic() - started
        metrics = httpx.get(server.http_url + "/metrics", timeout=10).text
    finally:
        code = server.stop()
    dropped = sum(float(m) for m in re.findall(r"^classify_trace_spans_dropped_total\{.*\} (\S+)$", metrics, re.M))
    assert dropped > 0, metrics
    assert elapsed < 60, f"20 calls took {elapsed:.1f} s"
    # From SIGTERM to "stopped" (the drain, then the bounded span flush): the SDK's own shutdown
    # would have waited about 8 s more for the missing collector.
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    records = {r["message"].split(":")[0]: r["time"] for r in lines if "message" in r}
    seconds = (_when(records["stopped"]) - _when(records["shutting down"])).total_seconds()
    assert code == 0 and seconds < 4, f"stopped with {code} after {seconds:.1f} s:\n{server.log()[-3000:]}"


def _when(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
