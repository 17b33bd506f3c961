"""The documentation's commands, run as written against real servers: README and docs/ cannot drift from the code.

A fenced block preceded by ``<!-- tested: KIND server=NAME -->`` is run by this test:

- ``start``: the command that starts server NAME (its flags and leading ``VAR=value`` are used
  as written; the test adds loopback free ports, ``--backend torch`` for a quick start, and, where
  the command names no model, a random-init ResNet18 as ``--weights``, which `make serve` would
  have fetched);
- ``run``: a shell block, run with bash in a scratch directory holding the files the pages name
  (cat.jpg, models/, the TLS files...); curl fails on any HTTP error status;
- ``python``: a Python block, run with .venv's Python; ``python-oip`` with .venv-oip's (tritonclient);
  ``python-tutorial`` as docs/api.md says, with ``PYTHONPATH=gen/classify``.

Only the port numbers change: ``127.0.0.1:50051`` / ``localhost:8000`` become the servers' free
ports. One server per configuration, shared by every block; the pages run in an order that leaves
the model-control rollout (which unloads models) for last.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from PIL import Image

from bench.harness import REPO, free_port, random_resnet18_weights, real_photos

# The servers start in a module fixture: its setup counts against the first test's timeout.
pytestmark = pytest.mark.timeout(900)
# In the order they run: model control last (it unloads models the others use).
PAGES = ("README.md", "docs/api.md", "docs/oip.md", "docs/security.md", "docs/models.md")
MARKER = re.compile(r"<!-- tested: (?P<kind>[\w-]+) server=(?P<server>\w+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)\n```", re.S)
ADDRESS = re.compile(r"\b(127\.0\.0\.1|localhost):(50051|8000)\b")
VENV_BIN = Path(sys.executable).parent
OIP_PYTHON = next((p for p in (REPO / ".venv-oip" / "bin" / "python", VENV_BIN.parent.parent / ".venv-oip" / "bin" / "python")
                   if p.exists()), None)
PYTHONPATH = os.pathsep.join(str(REPO / p) for p in ("", "gen", "clients/python/src"))
# Fails the block on any HTTP error status, and keeps progress meters out of the log.
PRELUDE = "set -eu\ncurl() { command curl --fail-with-body --silent --show-error \"$@\"; }\n"


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    kind: str
    server: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def documented_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        text = (REPO / page).read_text()
        for match in MARKER.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            blocks.append(Block(page, line, match["kind"], match["server"], match["body"]))
    return blocks


BLOCKS = documented_blocks()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    log: Path

    def rewrite(self, text: str) -> str:
        ports = {"50051": self.grpc_port, "8000": self.http_port}
        return ADDRESS.sub(lambda m: f"{m[1]}:{ports[m[2]]}", text)


def _environment(scratch: Path) -> dict[str, str]:
    wrappers = scratch / ".bin"  # `classify` and `classify-client` as this checkout's code
    wrappers.mkdir(exist_ok=True)
    for name, module in (("classify", "service.cli"), ("classify-client", "classify_client.cli")):
        script = wrappers / name
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m {module} "$@"\n')
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSIFY_")}
    env.update(PATH=f"{wrappers}{os.pathsep}{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=PYTHONPATH, PYTHONUNBUFFERED="1")
    return env


def _jpeg(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the pages name: photos, a model repository, weights to add, TLS files, tokens."""
    from service.tools.weights_store import place_in_repository

    root = tmp_path_factory.mktemp("documented")
    photos = real_photos()
    for name, photo in (("cat.jpg", "chelsea.png"), ("dog.jpg", "astronaut.png"), ("image.jpg", "coffee.png"),
                        ("ant.jpg", "rocket.jpg")):
        (root / name).write_bytes(_jpeg(photos[photo]))
    (root / "dog.png").write_bytes(photos["astronaut.png"])
    (root / "labels.txt").write_text("ant\nbee\nwasp\n")
    weights = root / "weights-in"
    weights.mkdir()
    repository = root / "models"
    place_in_repository(random_resnet18_weights(weights), repository, "resnet18", architecture="resnet18")
    for seed in (7, 8):
        place_in_repository(random_resnet18_weights(weights, seed=seed, num_classes=3), repository, "insects",
                            architecture="resnet18", labels=root / "labels.txt")
    random_resnet18_weights(weights, seed=9, num_classes=3).rename(root / "insects-v3.pth")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client@example.com")
    server.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
    server.private_key_pem.write_to_path(str(root / "server-key.pem"))
    client.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client.private_key_pem.write_to_path(str(root / "client-key.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    (root / "tokens.txt").write_text("classify-token-1\n")
    (root / "admin-tokens.txt").write_text("admin-token-1\n")
    (root / ".venv").symlink_to(VENV_BIN.parent)  # `.venv/bin/python ...` as the pages write it
    return root


def _start(block: Block, root: Path) -> Server:
    words = shlex.split(block.body.replace("\\\n", " "))
    env = _environment(root)
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[:2] == ["classify", "serve"], block.body
    grpc_port, http_port = free_port(), free_port()
    log = root / f"server-{block.server}.log"
    if not {"--weights", "--model", "--model-repository"} & set(words):
        words += ["--weights", str(next((root / "weights-in").glob("resnet18-seed0-*.pth")))]
    command = [sys.executable, "-m", "service.cli", "serve", *words[2:], "--host", "127.0.0.1",
               "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--backend", "torch",
               "--decode-workers", "1", "--torch-threads", "1"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(process, grpc_port, http_port, log)


def _wait_ready(server: Server, root: Path, secure: bool) -> None:
    from classify_client import ClassifyError, Client

    tls = {"root_ca": root / "ca.pem", "client_cert": (root / "client.pem", root / "client-key.pem")} if secure else {}
    with Client(f"localhost:{server.grpc_port}", **tls) as client:  # type: ignore[arg-type]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log.read_text()}")
            try:
                if client.health(timeout=2) == "SERVING":
                    return
            except ClassifyError:
                pass  # not listening yet
            time.sleep(0.2)
    raise TimeoutError(server.log.read_text())


@pytest.fixture(scope="module")
def servers(scratch: Path) -> Iterator[dict[str, Server]]:
    starts = {b.server: b for b in BLOCKS if b.kind == "start"}
    running = {name: _start(block, scratch) for name, block in starts.items()}
    try:
        for name, server in running.items():
            _wait_ready(server, scratch, secure="--tls-cert-file" in starts[name].body)
        yield running
    finally:
        for server in running.values():
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in running.values():
            server.process.wait(60)


def test_every_page_has_tested_commands() -> None:
    """Each page the README sends a newcomer to first has commands this test runs, and each server they use starts."""
    for page in PAGES:
        assert any(b.page == page and b.kind != "start" for b in BLOCKS), page
    started = {b.server for b in BLOCKS if b.kind == "start"}
    assert {b.server for b in BLOCKS} <= started, "a block names a server no page starts"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind != "start"], ids=lambda b: b.id)
def test_documented_block_runs(block: Block, servers: dict[str, Server], scratch: Path) -> None:
    """The block runs as written (ports aside) and succeeds."""
    server = servers[block.server]
    body = server.rewrite(block.body)
    env = _environment(scratch)
    if block.kind == "run":
        command = ["bash", "-c", PRELUDE + body]
    elif block.kind in ("python", "python-tutorial"):
        command = [sys.executable, "-c", body]
        if block.kind == "python-tutorial":
            env["PYTHONPATH"] = str(REPO / "gen" / "classify")
    elif block.kind == "python-oip":
        if OIP_PYTHON is None:
            pytest.fail("tritonclient's .venv-oip is missing: run `make oip-tools`")
        command = [str(OIP_PYTHON), "-c", body]
        env.pop("PYTHONPATH")
    else:
        raise AssertionError(f"unknown kind {block.kind!r} at {block.id}")
    result = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=180)
    output = f"{block.id} exited {result.returncode}\n--- block\n{body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, output
    assert "Traceback" not in result.stderr, output
