"""`classify export` as users run it: the exported graph serves over both transports with no torch loaded,
as a `--model` or as a model repository version; every failure is one line and leaves no partial graph."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest

from bench.harness import REPO, ServerProcess, start_server, torch_is_loaded
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc


def _classify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def exported(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported")
    result = _classify("export", f"r18=resnet18:{weights}", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"classify serve --model {out / 'r18.onnx'}" in result.stdout
    return out / "r18.onnx"


def _answers(server: ServerProcess, photo: bytes, model: str = "") -> tuple[pb.ClassifyResponse, dict[str, object]]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        over_grpc = pb_grpc.ClassifierServiceStub(channel).Classify(
            pb.ClassifyRequest(image=photo, top_k=3, model=model), timeout=30
        )
    over_http = httpx.post(
        f"{server.http_url}/v1/classify",
        json={"image": base64.b64encode(photo).decode(), "topK": 3, "model": model},
        timeout=30,
    ).json()
    return over_grpc, over_http


def test_an_exported_graph_serves_over_both_transports_without_torch(
    exported: Path, weights: Path, photos: dict[str, bytes], tmp_path: Path
) -> None:
    server = start_server(weights, tmp_path, "--model", str(exported))
    try:
        assert not torch_is_loaded(server.process.pid), "serving an exported graph imported torch"
        over_grpc, over_http = _answers(server, photos["chelsea.png"])
        assert over_grpc.model == over_http["model"] == "r18"
        assert [p.class_index for p in over_grpc.predictions] == [p["classIndex"] for p in over_http["predictions"]]
        # Its version is the source weights' digest, as when the weights themselves are served.
        assert over_grpc.model_version.startswith(weights.stem.split("-")[-1])
    finally:
        assert server.stop() == 0


def test_a_repository_version_holding_an_export_serves_without_torch(
    weights: Path, photos: dict[str, bytes], tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    result = _classify("export", f"pets=resnet18:{weights}", "--repository", str(repository))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (repository / "pets" / "1").iterdir()) == ["model.json", "model.onnx", "model.toml"]
    server = start_server(weights, tmp_path / "logs", "--model-repository", str(repository))
    try:
        assert not torch_is_loaded(server.process.pid)
        over_grpc, over_http = _answers(server, photos["coffee.png"], model="pets")
        assert (over_grpc.model, over_grpc.model_version) == ("pets", "1") == (over_http["model"], over_http["modelVersion"])
    finally:
        assert server.stop() == 0


def _bad_weights(weights: Path) -> list[str]:
    return ["resnet18", "--weights", str(weights), "--weights-sha256", "0" * 64]


FAILURES = {
    "missing file": (lambda w: ["x=resnet18:/nonexistent/resnet18-0badc0de.pth"], "weights file /nonexistent/resnet18-0badc0de.pth does not exist"),
    "unknown architecture": (lambda w: [f"x=vgg16:{w}"], "unknown architecture 'vgg16'"),
    "digest mismatch": (_bad_weights, "expected " + "0" * 64),
    "read-only target": (lambda w: [f"x=resnet18:{w}", "--out", "/sys/classify-export-test"], "cannot write /sys/classify-export-test/x.onnx"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_failed_export_is_one_line_and_leaves_no_graph(case: str, weights: Path, tmp_path: Path) -> None:
    arguments, message = FAILURES[case]
    args = arguments(weights)
    if "--out" not in args:
        args += ["--out", str(tmp_path)]
    result = _classify("export", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
