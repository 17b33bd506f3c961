"""Shared fixtures: deterministic weights, real photos, one real server per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support import ServerProcess, random_resnet18_weights, real_photos, start_server


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_resnet18_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    return real_photos()


@pytest.fixture(scope="session")
def server(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(weights, tmp_path_factory.mktemp("server"), "--max-request-bytes", str(8 << 20))
    yield running
    running.stop()


@pytest.fixture
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_address) as open_channel:
        yield open_channel
