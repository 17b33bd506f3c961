"""With tokens configured, tritonclient's calls need one; liveness and readiness stay open for probes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import ServerProcess, start_server
from tests.e2e.oip.conftest import run_driver

TOKEN = "oip-test-token"


@pytest.fixture(scope="module")
def token_server(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("oip-auth")
    (directory / "tokens").write_text(TOKEN + "\n")
    server = start_server(weights, directory, "--auth-token-file", str(directory / "tokens"))
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_token_required_except_health(
    protocol: str, token_server: ServerProcess, triton_python: Path, photo_files: list[Path]
) -> None:
    url = token_server.grpc_address if protocol == "grpc" else f"127.0.0.1:{token_server.http_port}"
    seen = run_driver(triton_python, protocol, url, photo_files, "--scenario", "auth", "--token", TOKEN)
    assert seen["live_without_token"] and seen["ready_without_token"]
    refused = "StatusCode.UNAUTHENTICATED" if protocol == "grpc" else "401"
    for call in ("infer_without_token", "metadata_without_token"):
        assert seen[call]["status"] == refused and "bearer token" in seen[call]["message"], seen[call]
    assert seen["infer_with_token"] == [1, 1000]
