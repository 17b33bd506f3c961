"""The TypeScript client that buf generates (clients/typescript) against a real server.

Setup runs `npm ci` (only when node_modules does not match package-lock.json),
`buf generate --template buf.gen.clients.yaml` and `tsc` (only when their inputs
changed). Node.js 20+ and npm are required: without them this test fails, it
never skips, so CI really runs the other-language client.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest

from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from bench.harness import REPO, ServerProcess

CLIENT = REPO / "clients" / "typescript"
BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
LOCK_STAMP = CLIENT / "node_modules" / ".classify-lock.sha256"
BUILD_STAMP = CLIENT / "dist" / ".classify-inputs.sha256"


def _run(args: list[str], cwd: Path, timeout: float) -> str:
    try:
        result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(args)}` did not finish within {timeout:.0f} s")
    assert result.returncode == 0, f"`{' '.join(args)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _digest(*paths: Path) -> str:
    sha = hashlib.sha256()
    for path in paths:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                sha.update(file.relative_to(REPO).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return sha.hexdigest()


def _tool(name: str) -> str:
    path = shutil.which(name, path=ENV["PATH"])
    if path is None:
        pytest.fail(f"`{name}` not found on PATH: install Node.js 20+ with npm to run the TypeScript client test")
    return path


@pytest.fixture(scope="module")
def example() -> list[str]:
    """The command that runs the compiled example, after npm ci / buf generate / tsc as needed."""
    node, npm = _tool("node"), _tool("npm")
    version = _run([node, "--version"], CLIENT, 30).strip()
    assert int(version.lstrip("v").split(".")[0]) >= 20, f"Node.js 20+ is needed, found {version}"
    lock = _digest(CLIENT / "package.json", CLIENT / "package-lock.json")
    if not LOCK_STAMP.is_file() or LOCK_STAMP.read_text() != lock:
        _run([npm, "ci", "--no-audit", "--no-fund"], CLIENT, 300)
        LOCK_STAMP.write_text(lock)
    inputs = _digest(
        REPO / "buf.yaml", REPO / "buf.gen.clients.yaml", REPO / "proto",
        CLIENT / "tsconfig.json", CLIENT / "src" / "example.ts", LOCK_STAMP,
    )
    if not BUILD_STAMP.is_file() or BUILD_STAMP.read_text() != inputs:
        _run([str(BIN / "buf"), "generate", "--template", "buf.gen.clients.yaml"], REPO, 120)
        shutil.rmtree(CLIENT / "dist", ignore_errors=True)
        _run([str(CLIENT / "node_modules" / ".bin" / "tsc"), "-p", "."], CLIENT, 120)
        BUILD_STAMP.write_text(inputs)
    return [node, str(CLIENT / "dist" / "example.js")]


def _pairs(predictions: list[dict]) -> list[tuple[str, int]]:
    return [(p["label"], p["classIndex"]) for p in predictions]


@pytest.mark.timeout(600)  # a first `npm ci` on a fresh clone is part of this test
@pytest.mark.parametrize(("name", "top_k"), [("chelsea.png", 3), ("rocket.jpg", 5)])
def test_typescript_client_agrees_with_python_stub(
    name: str, top_k: int, example: list[str], server: ServerProcess, photos: dict[str, bytes], tmp_path: Path
) -> None:
    image = tmp_path / name
    image.write_bytes(photos[name])
    out = json.loads(_run([*example, server.grpc_address, server.http_url, str(image), str(top_k)], CLIENT, 60))

    with grpc.insecure_channel(server.grpc_address) as channel:
        reference = pb_grpc.ClassifierServiceStub(channel).Classify(
            pb.ClassifyRequest(image=photos[name], top_k=top_k), timeout=30
        )
    expected = [(p.label, p.class_index) for p in reference.predictions]
    assert len(expected) == top_k
    assert out["model"] == {"grpc": reference.model, "http": reference.model}
    assert out["modelVersion"] == {"grpc": reference.model_version, "http": reference.model_version}
    for transport in ("grpc", "http"):
        assert _pairs(out[transport]) == expected, transport
        # Equal as float32: gRPC carries the float32 itself, JSON its shortest decimal form.
        ours = np.float32([p["probability"] for p in out[transport]])
        assert np.array_equal(ours, np.float32([p.probability for p in reference.predictions])), (transport, out)
