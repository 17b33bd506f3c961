"""grpc.health.v1 follows the model: NOT_SERVING while loading, SERVING when warm, NOT_SERVING on drain."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import start_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_not_serving_until_warm_then_serving_then_draining(weights: Path, tmp_path: Path) -> None:
    # A large warm-up batch keeps the loading window open long enough to watch it.
    server = start_server(weights, tmp_path, "--batch-max-size", "48", wait=False)
    try:
        # A fresh channel per attempt: no reconnect back-off hides the loading window.
        first = None
        while first is None:
            try:
                first = server.health("classify.v1.ClassifierService")
            except grpc.RpcError:
                assert server.process.poll() is None, server.log()
                time.sleep(0.02)
        assert first == NOT_SERVING
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="classify.v1.ClassifierService"), timeout=120)
            assert next(u.status for u in watch if u.status == SERVING) == SERVING
            assert stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == SERVING
            watch_overall = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(watch_overall).status == SERVING
            server.process.send_signal(15)
            assert next(watch_overall).status == NOT_SERVING
        assert server.process.wait(60) == 0
    finally:
        server.process.kill()
