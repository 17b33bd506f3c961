"""Fetching weights from a real HTTP server on loopback: verified, resumable, atomic."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import REPO, free_port
from service.core.weights import OfficialWeights
from service.tools.weights_store import PARTIAL_SUFFIX, FetchError, fetch, scan

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with HTTP Range support; records the ranges asked for."""

    ranges: list[str | None] = []
    fail_after: int | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        asked = self.headers.get("Range")
        type(self).ranges.append(asked)
        start = int(asked.split("=")[1].split("-")[0]) if asked else 0
        body = PAYLOAD[start:]
        self.send_response(206 if asked else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).fail_after is not None:
            self.wfile.write(body[: type(self).fail_after])
            self.wfile.flush()
            self.connection.close()  # the connection drops mid-download
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def mirror() -> Iterator[str]:
    _RangeHandler.ranges = []
    _RangeHandler.fail_after = None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/model.pth"
    server.shutdown()


def _artifact(url: str, payload: bytes = PAYLOAD) -> OfficialWeights:
    digest = hashlib.sha256(payload).hexdigest()
    return OfficialWeights(model="test", filename=f"test-{digest[:8]}.pth", url=url, sha256=digest)


def test_fetch_verifies_then_renames(mirror: str, tmp_path: Path) -> None:
    path = fetch(_artifact(mirror), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert not list(tmp_path.glob("*" + PARTIAL_SUFFIX))
    assert [entry.verified for entry in scan(tmp_path)] == [True]


def test_broken_download_resumes_where_it_stopped(mirror: str, tmp_path: Path) -> None:
    artifact = _artifact(mirror)
    _RangeHandler.fail_after = 300_000
    with pytest.raises(FetchError):
        fetch(artifact, tmp_path, progress=False)
    assert not (tmp_path / artifact.filename).exists(), "a half file carries the final name"
    partial = tmp_path / (artifact.filename + PARTIAL_SUFFIX)
    assert partial.stat().st_size == 300_000
    _RangeHandler.fail_after = None
    fetch(artifact, tmp_path, progress=False)
    assert _RangeHandler.ranges[-1] == "bytes=300000-"
    assert (tmp_path / artifact.filename).read_bytes() == PAYLOAD


def test_wrong_digest_is_removed_and_never_named(mirror: str, tmp_path: Path) -> None:
    artifact = _artifact(mirror, payload=b"something else")
    with pytest.raises(FetchError, match=f"expected {artifact.sha256}"):
        fetch(artifact, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_offline_fetch_fails_fast_naming_url_digest_and_path(tmp_path: Path) -> None:
    """The real `classify weights fetch resnet18`, pointed at a closed local port."""
    url = f"http://127.0.0.1:{free_port()}/resnet18-f37072fd.pth"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "weights", "fetch", "resnet18", "--dir", str(tmp_path), "--url", url],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    for fact in (url, "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
                 str(tmp_path / "resnet18-f37072fd.pth")):
        assert fact in result.stderr
    assert list(tmp_path.iterdir()) == []


def _fetch_command(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "weights", "fetch", "resnet18", "--dir", str(tmp_path), *args],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )


def test_fetch_of_another_resnet18_by_its_digest_is_named_after_it(mirror: str, tmp_path: Path) -> None:
    """`--sha256` (a fine-tuned ResNet18, the image's bake path): verified, named resnet18-<8 hex>.pth."""
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    result = _fetch_command(tmp_path, "--url", mirror, "--sha256", digest.upper())
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"resnet18-{digest[:8]}.pth").read_bytes() == PAYLOAD
    assert [entry.verified for entry in scan(tmp_path)] == [True]

    wrong = _fetch_command(tmp_path / "wrong", "--url", mirror, "--sha256", "0" * 64)
    assert wrong.returncode == 1 and f"has SHA-256 {digest}, expected {'0' * 64}" in wrong.stderr
    assert not list((tmp_path / "wrong").iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (("--url", "http://127.0.0.1:1/x.pth", "--sha256", "f37072fd"), "is not 64 hex digits"),
    (("--sha256", "1" * 64), "pass its --url"),
])
def test_fetch_rejects_a_bad_sha256_before_downloading(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = _fetch_command(tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr
    assert not tmp_path.joinpath("resnet18-11111111.pth").exists()


def test_verify_reports_a_corrupted_file(tmp_path: Path, weights: Path) -> None:
    corrupt = tmp_path / "resnet18-f37072fd.pth"
    corrupt.write_bytes(weights.read_bytes()[:1000])
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "weights", "verify", "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "FAILED" in result.stderr and "expected f37072fd" in result.stderr
