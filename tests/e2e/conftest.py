"""Fixtures of the e2e tier beside tests/conftest.py's: a standalone gateway in front of the session's server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness import ServerProcess, start_gateway


@pytest.fixture(scope="module")
def standalone_gateway(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`classify gateway --grpc-upstream` (its own process) in front of the session's `classify serve`."""
    gateway = start_gateway(server.grpc_address, tmp_path_factory.mktemp("gateway"))
    yield gateway.http_url
    assert gateway.stop() == 0, gateway.log_path.read_text()
