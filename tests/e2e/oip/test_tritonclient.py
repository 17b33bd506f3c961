"""NVIDIA's tritonclient (gRPC and HTTP) against a real server: every call it makes, and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from bench.harness import ServerProcess
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from tests.e2e.oip.conftest import run_driver

PROTOCOLS = ("grpc", "http")


@pytest.fixture(scope="module", params=PROTOCOLS)
def seen(request: pytest.FixtureRequest, server: ServerProcess, triton_python: Path, photo_files: list[Path]) -> dict[str, Any]:
    """What tritonclient saw, calling everything once over one protocol."""
    url = server.grpc_address if request.param == "grpc" else f"127.0.0.1:{server.http_port}"
    observed = run_driver(triton_python, request.param, url, photo_files)
    observed["protocol"] = request.param
    return observed


@pytest.fixture(scope="module")
def reference(server: ServerProcess, photo_files: list[Path]) -> np.ndarray:
    """Each photo's full probability vector from classify.v1 (top_k = every class), by class index."""
    rows = []
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        for path in photo_files:
            reply = stub.Classify(pb.ClassifyRequest(image=path.read_bytes(), top_k=1000), timeout=60)
            row = np.zeros(1000, dtype=np.float32)
            for p in reply.predictions:
                row[p.class_index] = p.probability
            rows.append(row)
    return np.stack(rows)


def test_health_and_metadata(seen: dict[str, Any]) -> None:
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    assert seen["unknown_model_ready"] is False
    assert seen["server_metadata"]["name"] == "classify"
    assert {"classification", "binary_tensor_data", "statistics"} <= set(seen["server_metadata"]["extensions"])
    metadata = seen["model_metadata"]
    assert metadata["name"] == "resnet18" and metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in metadata["inputs"]] == [("IMAGE", "BYTES", [-1, 1])]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in metadata["outputs"]] == [
        ("PROBABILITIES", "FP32", [-1, 1000])
    ]


def test_config_lets_clients_batch(seen: dict[str, Any]) -> None:
    """max_batch_size comes from the service's batch limit; input names match the metadata's."""
    config = seen["model_config"]
    assert int(config["max_batch_size"]) == 64  # --max-batch-images' default
    assert config["input"][0]["name"] == "IMAGE" and config["input"][0]["data_type"] == "TYPE_STRING"
    assert [int(d) for d in config["input"][0]["dims"]] == [1]
    assert int(config["dynamic_batching"]["preferred_batch_size"][0]) == 8
    assert len(config["parameters"]["weights_sha256"]["string_value"]) == 64


def test_single_image_equals_classify_v1(seen: dict[str, Any], reference: np.ndarray) -> None:
    single = seen["single"]
    assert single["shape"] == [1, 1000] and single["datatype"] == "FP32"
    assert (single["model_name"], single["model_version"]) == ("resnet18", "1")
    np.testing.assert_allclose(np.array(single["probabilities"], dtype=np.float32), reference[0], rtol=1e-4, atol=1e-6)


def test_batch_of_four_equals_classify_v1(seen: dict[str, Any], reference: np.ndarray) -> None:
    batch = np.array(seen["batch"], dtype=np.float32)
    assert batch.shape == (4, 1000)
    np.testing.assert_allclose(batch, reference, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, atol=1e-4)


def test_classification_extension(seen: dict[str, Any], reference: np.ndarray, server: ServerProcess) -> None:
    """K "score:index:label" strings per image: the K most probable classes, labels from the model."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        labels = pb_grpc.ClassifierServiceStub(channel).GetModel(pb.GetModelRequest(name="resnet18")).model.labels
    for row, expected in zip(seen["classification"], reference, strict=True):
        assert len(row) == 3
        parsed = [entry.split(":", 2) for entry in row]
        indices = [int(index) for _, index, _ in parsed]
        assert indices == list(np.argsort(-expected, kind="stable")[:3])
        for (score, _index, label), i in zip(parsed, indices, strict=True):
            assert label == labels[i] and abs(float(score) - expected[i]) < 2e-6
            assert len(score.split(".")[1]) == 6


def test_bad_input_gets_clean_errors(seen: dict[str, Any]) -> None:
    errors = seen["errors"]
    expected = {
        "grpc": {
            "garbage": "INVALID_ARGUMENT", "unknown_model": "NOT_FOUND", "wrong_datatype": "INVALID_ARGUMENT",
            "wrong_shape": "INVALID_ARGUMENT", "too_many_images": "INVALID_ARGUMENT", "oversize": "RESOURCE_EXHAUSTED",
            "unimplemented": "UNIMPLEMENTED",
        },
        "http": {
            "garbage": "400", "unknown_model": "404", "wrong_datatype": "400",
            "wrong_shape": "400", "too_many_images": "400", "oversize": "413",
        },
    }[seen["protocol"]]
    assert {name: error["status"].removeprefix("StatusCode.") for name, error in errors.items()} == expected
    assert "could not be decoded" in errors["garbage"]["message"]
    assert "no-such-model" in errors["unknown_model"]["message"]
    assert "BYTES" in errors["wrong_datatype"]["message"] and "[1, 2]" in errors["wrong_shape"]["message"]
    assert "Traceback" not in str(errors)
    if seen["protocol"] == "grpc":
        assert "SystemSharedMemoryStatus is not implemented" in errors["unimplemented"]["message"]


def test_server_keeps_serving_after_errors(seen: dict[str, Any], reference: np.ndarray) -> None:
    np.testing.assert_allclose(np.array(seen["after_errors"], dtype=np.float32), reference[0], rtol=1e-4, atol=1e-6)


def test_statistics_count_real_work(seen: dict[str, Any]) -> None:
    """ModelStatistics as perf_analyzer reads it: images, batches and stage times, failures apart."""
    stats = seen["statistics"]
    assert stats["name"] == "resnet18" and stats["version"] == "1"
    inference = stats["inference_stats"]
    # single (1) + batch (4) + classification (4) + after_errors (1) at least, from this driver alone
    assert int(stats["inference_count"]) >= 10 and 1 <= int(stats["execution_count"]) <= int(stats["inference_count"])
    assert int(inference["success"]["count"]) >= 10 and int(inference["fail"]["count"]) >= 1
    for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert int(inference[stage]["count"]) >= 10 and int(inference[stage]["ns"]) > 0, stage
    assert int(stats["last_inference"]) > 0


def test_repository_index(seen: dict[str, Any]) -> None:
    index = seen["repository_index"]
    models = index["models"] if isinstance(index, dict) else index
    assert [(m["name"], m["version"], m["state"]) for m in models] == [("resnet18", "1", "READY")]
