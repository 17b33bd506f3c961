"""Prometheus metrics, request ids echoed on both transports, structured JSON logs."""

from __future__ import annotations

import json
import time

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import ServerProcess
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc


def _families(server: ServerProcess) -> dict[str, list]:
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_cover_transports_batches_queue_and_timings(server: ServerProcess, photos: dict[str, bytes]) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        stub.Classify(pb.ClassifyRequest(image=photos["rocket.jpg"]), timeout=30)
        try:
            stub.Classify(pb.ClassifyRequest(image=b"junk"), timeout=30)
        except grpc.RpcError:
            pass
    httpx.post(f"{server.http_url}/predict/file", files={"file": ("x", photos["rocket.jpg"])}, timeout=30)
    families = _families(server)
    requests = {(s.labels["transport"], s.labels["method"], s.labels["code"]) for s in families["classify_requests"]}
    assert ("grpc", "/classify.v1.ClassifierService/Classify", "OK") in requests
    assert ("grpc", "/classify.v1.ClassifierService/Classify", "INVALID_ARGUMENT") in requests
    assert ("http", "/predict/file", "200") in requests
    for name in ("classify_request_duration_seconds", "classify_preprocess_seconds",
                 "classify_inference_seconds", "classify_batch_size"):
        counts = [s.value for s in families[name] if s.name.endswith("_count")]
        assert counts and max(counts) > 0, name
    assert {s.labels["model"]: s.value for s in families["classify_model_ready"]} == {"resnet18": 1.0}
    assert [s.labels["model"] for s in families["classify_queue_depth"]] == ["resnet18"]
    assert "classify_images_in_flight" in families and "process_resident_memory_bytes" in families


def test_request_ids_are_taken_or_generated_and_echoed(server: ServerProcess, photos: dict[str, bytes]) -> None:
    given = httpx.get(f"{server.http_url}/v1/models", headers={"x-request-id": "trace-42"}, timeout=10)
    assert given.headers["x-request-id"] == "trace-42"
    made = httpx.post(f"{server.http_url}/v1/classify", json={"image": "!!"}, timeout=10)
    assert made.status_code == 400 and len(made.headers["x-request-id"]) == 32
    hostile = httpx.get(f"{server.http_url}/healthz", headers={"x-request-id": "a\tb" * 100}, timeout=10)
    assert hostile.headers["x-request-id"] != "a\tb" * 100  # not echoed blindly into headers or logs
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        _, call = stub.Classify.with_call(
            pb.ClassifyRequest(image=photos["coffee.png"]), metadata=(("x-request-id", "grpc-7"),), timeout=30
        )
        assert dict(call.initial_metadata())["x-request-id"] == "grpc-7"


def test_grpc_errors_are_trailers_only_with_the_request_id(server: ServerProcess) -> None:
    """A failed call sends no response headers before its status (Trailers-Only), the request id in trailers.

    A proxy retries a gRPC status only from a Trailers-Only response (envoyproxy/envoy#17629),
    and a reset only before response headers: headers sent at the start of every call made
    neither retryable (deploy/envoy/envoy.yaml).
    """
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        try:
            stub.Classify(pb.ClassifyRequest(image=b"junk"), metadata=(("x-request-id", "grpc-8"),), timeout=30)
        except grpc.RpcError as error:
            failed = error
        else:
            raise AssertionError("junk was classified")
    assert failed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.initial_metadata() == ()  # nothing came before the status
    assert dict(failed.trailing_metadata())["x-request-id"] == "grpc-8"


def _json_records(server: ServerProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def test_logs_are_json_lines_with_request_ids(server: ServerProcess) -> None:
    httpx.get(f"{server.http_url}/v1/models/resnet18", headers={"x-request-id": "log-probe-1"}, timeout=10)
    # The access line is written after the answer is sent: on a busy machine it may land a moment later.
    deadline = time.monotonic() + 10
    while not any(r.get("request_id") == "log-probe-1" for r in _json_records(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    records = _json_records(server)
    assert records, "no JSON log lines"
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    assert any(r["request_id"] == "log-probe-1" and "/v1/models/resnet18" in r["message"] for r in records)
