"""Triton's perf_analyzer runs against a real server over both transports and reports server-side figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.harness import ServerProcess, skimage_photo, sklearn_photo
from bench.perf_analyzer import PERF_ANALYZER, input_data, perf_analyzer


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_measures_a_throughput(protocol: str, server: ServerProcess, tmp_path: Path) -> None:
    """Its start-up (metadata, config, server metadata) passes, it infers real JPEGs and reads ModelStatistics."""
    if not PERF_ANALYZER.exists():
        pytest.fail("perf_analyzer is missing: run `make oip-tools` (make test does)")
    data = tmp_path / "input.json"
    data.write_text(json.dumps(input_data([sklearn_photo("china.jpg"), skimage_photo("rocket.jpg")])))
    url = server.grpc_address if protocol == "grpc" else f"127.0.0.1:{server.http_port}"
    figures, output = perf_analyzer(
        protocol, url, data, concurrency=2, out_csv=tmp_path / "out.csv", request_count=6, stability=999, trials=3
    )
    assert figures["throughput"] > 0, output
    assert figures["server_inference_count"] > 0, output  # ModelStatistics read and matched to version "1"
    assert figures["server_compute_infer_us"] > 0 and figures["p99_us"] >= figures["p50_us"] > 0, output
