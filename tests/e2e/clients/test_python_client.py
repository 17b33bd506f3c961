"""The Python client as a user installs it: sdist and wheel built, the wheel alone in a fresh venv, real calls.

`python -m build` makes the sdist and, from it, the wheel (so the sdist is complete);
the wheel goes into a new virtual environment with nothing else, which must stay
small and free of the server's heavy dependencies, and then classifies real photos
against a real server over gRPC and HTTP, through the library and the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import grpc
import pytest

from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from bench.harness import REPO, ServerProcess, run_command, tree_bytes

CLIENT = REPO / "clients" / "python"
HEAVY = {"torch", "torchvision", "numpy", "pillow", "onnxruntime", "onnx", "timm", "fastapi"}
MAX_VENV_BYTES = 80 * 1024 * 1024

LIBRARY_SCRIPT = """
import asyncio, json, sys
import classify_client
from classify_client import AsyncClient, Client, to_proto_json

grpc_target, http_target, *images = sys.argv[1:]
out = {"file": classify_client.__file__, "api": classify_client.API_PACKAGE, "version": classify_client.__version__}
for transport, target in (("grpc", grpc_target), ("http", http_target)):
    with Client(target, transport=transport) as client:
        client.wait_ready(timeout=60)
        out[transport] = [to_proto_json(client.classify(open(i, "rb").read(), top_k=3)) for i in images]

async def main():
    async with AsyncClient(http_target, transport="http") as client:
        return [to_proto_json(r) for r in await client.classify_batch([open(i, "rb").read() for i in images], top_k=3)]

out["http-async-batch"] = asyncio.run(main())
print(json.dumps(out))
"""


def _top3(server: ServerProcess, image: bytes) -> list[tuple[str, int]]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        reply = pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=image, top_k=3), timeout=60)
    return [(p.label, p.class_index) for p in reply.predictions]


def _labels(document: dict[str, object]) -> list[tuple[str, int]]:
    return [(p["label"], p.get("classIndex", 0)) for p in document["predictions"]]  # type: ignore[attr-defined]


def test_the_wheel_alone_in_a_fresh_venv_classifies_over_grpc_and_http(
    server: ServerProcess, photos: dict[str, bytes], tmp_path: Path
) -> None:
    """Built, installed without the server, light, and right over both transports (library and command)."""
    dist = tmp_path / "dist"
    run_command([sys.executable, "-m", "build", "--outdir", str(dist), str(CLIENT)], cwd=tmp_path, timeout=300, env=dict(os.environ))
    (sdist,) = dist.glob("classify_client-*.tar.gz")
    (wheel,) = dist.glob("classify_client-*-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"classify_client/_proto/classify/v1/classify_pb2.py", "classify_client/models/classify/v1/__init__.py"} <= names

    venv = tmp_path / "venv"
    run_command([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, timeout=120)
    python = str(venv / "bin" / "python")
    run_command([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)], cwd=tmp_path, timeout=300)
    installed = {p["name"].lower() for p in json.loads(run_command([python, "-m", "pip", "list", "--format", "json"], cwd=tmp_path, timeout=60))}
    assert "classify-client" in installed and not installed & HEAVY, sorted(installed & HEAVY)
    size = tree_bytes(venv)
    print(f"\nclient venv: {size / 2**20:.1f} MiB, {len(installed)} distributions: {', '.join(sorted(installed))}")
    assert size < MAX_VENV_BYTES, f"the client's venv is {size / 2**20:.1f} MiB"

    images = {name: tmp_path / name for name in ("chelsea.png", "rocket.jpg")}
    for name, path in images.items():
        path.write_bytes(photos[name])
    expected = [_top3(server, photos[name]) for name in images]

    script = tmp_path / "use_library.py"
    script.write_text(LIBRARY_SCRIPT)
    out = json.loads(run_command([python, str(script), server.grpc_address, server.http_url, *map(str, images.values())], cwd=tmp_path, timeout=120))
    assert out["file"].startswith(str(venv)) and (out["api"], out["version"]) == ("classify.v1", "1.0.0")
    for key in ("grpc", "http", "http-async-batch"):
        assert [_labels(doc) for doc in out[key]] == expected, key

    command = str(venv / "bin" / "classify-client")
    for transport in ("grpc", "http"):
        printed = run_command(
            [command, "predict", *map(str, images.values()), "--json", "--top-k", "3", "--transport", transport,
             "--server", server.grpc_address, "--http", server.http_url],
            cwd=tmp_path, timeout=120,
        )
        documents = [json.loads(line) for line in printed.splitlines()]
        assert [d["image"] for d in documents] == [str(p) for p in images.values()]
        assert [_labels(d) for d in documents] == expected, transport
    table = run_command([command, "predict", str(images["chelsea.png"]), "--top-k", "3", "--server", server.grpc_address], cwd=tmp_path, timeout=120)
    assert table.splitlines()[1].lstrip().startswith(f"1. {expected[0][0][0]} ")  # "   1. <label>  <probability>"
    assert sdist.stat().st_size > 0
