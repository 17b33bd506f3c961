"""The `classify` command line: predict against a real server, clear start-up errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO, ServerProcess, free_port, skimage_photo


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
    assert result.returncode == 2 and "grpc_port" in result.stderr
