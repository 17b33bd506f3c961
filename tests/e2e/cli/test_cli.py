"""The `classify` command line: predict against a real server, clear start-up errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.harness import REPO, ServerProcess, free_port, skimage_photo


def _classify(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_predict_prints_a_table(server: ServerProcess, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(skimage_photo("chelsea.png"))
    result = _classify("predict", str(image), "--server", server.grpc_address, "--top-k", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{image}  (model resnet18 @ ")
    assert [line.split(".")[0].strip() for line in lines[1:]] == ["1", "2", "3"]


def test_predict_json_and_errors(server: ServerProcess, tmp_path: Path) -> None:
    good, bad = tmp_path / "rocket.jpg", tmp_path / "bad.jpg"
    good.write_bytes(skimage_photo("rocket.jpg"))
    bad.write_bytes(b"nope")
    result = _classify("predict", str(good), str(bad), "--server", server.grpc_address, "--json")
    assert result.returncode == 1
    (document,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert document["image"] == str(good) and len(document["predictions"]) == 5
    assert f"{bad}: INVALID_ARGUMENT: image could not be decoded" in result.stderr


def test_serve_refuses_unverifiable_weights_with_a_clear_message(tmp_path: Path, weights: Path) -> None:
    unnamed = tmp_path / "model.pth"
    unnamed.write_bytes(weights.read_bytes())
    result = _classify(
        "serve", "--host", "127.0.0.1", "--grpc-port", str(free_port()), "--weights", str(unnamed)
    )
    assert result.returncode == 2
    assert "cannot be verified" in result.stderr and "Traceback" not in result.stderr


def test_serve_rejects_bad_settings(tmp_path: Path) -> None:
    result = _classify("serve", "--grpc-port", "not-a-port")
    assert result.returncode == 2 and "--grpc-port not-a-port" in result.stderr and "Traceback" not in result.stderr


def test_serve_without_resnet18_weights_serves_the_bundled_model_loudly(tmp_path: Path) -> None:
    """What `make serve` does on a fresh machine that cannot fetch ResNet18."""
    import grpc

    from bench.harness import ServerProcess
    from classify.v1 import classify_pb2 as pb
    from classify.v1 import classify_pb2_grpc as pb_grpc

    grpc_port, http_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1",
             "--grpc-port", str(grpc_port), "--http-port", str(http_port)],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,  # no weights/ directory here
        )
    server = ServerProcess(process, grpc_port, http_port, log)
    try:
        server.wait_serving()
        with grpc.insecure_channel(server.grpc_address) as channel:
            reply = pb_grpc.ClassifierServiceStub(channel).Classify(
                pb.ClassifyRequest(image=skimage_photo("coffee.png")), timeout=30
            )
        assert reply.model == "efficientnet_lite0" and reply.predictions[0].label == "espresso"
        assert "classify weights fetch resnet18" in server.log()
    finally:
        assert server.stop() == 0


def test_explicit_missing_weights_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    result = _classify(
        "serve", "--host", "127.0.0.1", "--grpc-port", str(free_port()), "--http-port", str(free_port()),
        "--weights", str(tmp_path / "resnet18-f37072fd.pth"),
    )
    assert result.returncode == 2 and "does not exist" in result.stderr
