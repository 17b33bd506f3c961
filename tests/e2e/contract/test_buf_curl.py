"""README's `buf curl` commands, run against a real server through reflection (no .proto at hand)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from bench.harness import ServerProcess, skimage_photo
from tests.e2e.contract.test_buf import BUF, ENV

FLAGS = ["--protocol", "grpc", "--http2-prior-knowledge"]


def _curl(*args: str, cwd: Path) -> str:
    result = subprocess.run([BUF, "curl", *FLAGS, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_methods(server: ServerProcess, tmp_path: Path) -> None:
    methods = _curl("--list-methods", f"http://{server.grpc_address}", cwd=tmp_path).split()
    assert "classify.v1.ClassifierService/Classify" in methods and "classify.Classifier/Predict" in methods
    assert "grpc.health.v1.Health/Check" in methods


def test_classify_with_a_base64_image_and_health(server: ServerProcess, tmp_path: Path) -> None:
    request = {"image": base64.b64encode(skimage_photo("coffee.png")).decode(), "topK": 3}
    (tmp_path / "req.json").write_text(json.dumps(request))
    reply = json.loads(_curl("-d", "@req.json", f"http://{server.grpc_address}/classify.v1.ClassifierService/Classify", cwd=tmp_path))
    assert len(reply["predictions"]) == 3 and reply["model"] == "resnet18"
    health = json.loads(_curl(f"http://{server.grpc_address}/grpc.health.v1.Health/Check", cwd=tmp_path))
    assert health == {"status": "SERVING"}


def test_inference_protocol_through_reflection(server: ServerProcess, tmp_path: Path) -> None:
    """buf curl reaches the OIP with no .proto at hand: metadata, and an image as a BYTES tensor."""
    base = f"http://{server.grpc_address}/inference.GRPCInferenceService"
    metadata = json.loads(_curl("-d", '{"name": "resnet18"}', f"{base}/ModelMetadata", cwd=tmp_path))
    assert metadata["inputs"][0] == {"name": "IMAGE", "datatype": "BYTES", "shape": ["-1", "1"]}
    image = base64.b64encode(skimage_photo("coffee.png")).decode()
    request = {
        "modelName": "resnet18",
        "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": ["1", "1"], "contents": {"bytesContents": [image]}}],
        "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": {"int64Param": "2"}}}],
    }
    (tmp_path / "infer.json").write_text(json.dumps(request))
    reply = json.loads(_curl("-d", "@infer.json", f"{base}/ModelInfer", cwd=tmp_path))
    assert reply["outputs"][0]["datatype"] == "BYTES" and reply["outputs"][0]["shape"] == ["1", "2"]
    assert len(reply["rawOutputContents"]) == 1
