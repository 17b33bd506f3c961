"""The default backend as users start it: the ONNX graph exported on first start, cached, and ready only when warm."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from bench.harness import random_resnet18_weights, start_server, torch_is_loaded
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from service.core.onnx_backend import EXPORT_REVISION

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _graphs(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*-fp32-x{EXPORT_REVISION}.onnx"))


def test_first_start_exports_the_graph_before_serving_then_later_starts_reuse_it(tmp_path: Path) -> None:
    """NOT_SERVING while the graph is exported and warmed; SERVING only once it exists; later starts import no torch."""
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    weights = random_resnet18_weights(weights_dir, seed=11)  # never exported before
    server = start_server(weights, tmp_path / "first", "--batch-max-size", "48", wait=False)
    try:
        seen = []
        while not seen or seen[-1] != SERVING:
            try:
                status = server.health()
            except grpc.RpcError:
                assert server.process.poll() is None, server.log()
                time.sleep(0.02)
                continue
            if status == SERVING:
                assert _graphs(weights_dir), "SERVING before the ONNX graph was written"
            seen.append(status)
            time.sleep(0.02)
        assert seen[0] == NOT_SERVING
        log = server.log()
        assert "exported resnet18 to ONNX in" in log and log.index("exported resnet18") < log.index("warmed up model")
        (graph,) = _graphs(weights_dir)
        assert graph.name.startswith("resnet18-" + weights.name.split("-")[-1].removesuffix(".pth"))
        with grpc.insecure_channel(server.grpc_address) as channel:
            (info,) = pb_grpc.ClassifierServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=10).models
        assert (info.backend, info.precision) == ("onnxruntime", "fp32")
        assert graph.name.startswith(f"resnet18-{info.weights_sha256[:16]}-")
    finally:
        assert server.stop() == 0
    again = start_server(weights, tmp_path / "again")
    try:
        assert "using the cached ONNX graph" in again.log() and "exporting resnet18" not in again.log()
        assert _graphs(weights_dir) == [graph]
        assert not torch_is_loaded(again.process.pid), "a start with the graph cached imported torch"
    finally:
        again.stop()


def test_torch_stays_available(weights: Path, tmp_path: Path) -> None:
    """`--backend torch` serves torch fp32, with no graph exported."""
    server = start_server(weights, tmp_path, "--backend", "torch")
    try:
        with grpc.insecure_channel(server.grpc_address) as channel:
            (info,) = pb_grpc.ClassifierServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=10).models
        assert (info.backend, info.precision) == ("torch", "fp32")
        assert "ONNX" not in server.log()
    finally:
        server.stop()


def test_a_read_only_weights_place_exports_to_cache_dir(weights: Path, tmp_path: Path) -> None:
    """The bundled model's weights sit in site-packages: its graph goes to --cache-dir, named by its digest."""
    cache = tmp_path / "cache"
    server = start_server(weights, tmp_path / "logs", "--model", "efficientnet_lite0", "--cache-dir", str(cache))
    try:
        with grpc.insecure_channel(server.grpc_address) as channel:
            (info,) = pb_grpc.ClassifierServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=10).models
        assert info.backend == "onnxruntime"
        assert [g.name for g in _graphs(cache)] == [f"efficientnet_lite0-{info.weights_sha256[:16]}-fp32-x{EXPORT_REVISION}.onnx"]
    finally:
        server.stop()
