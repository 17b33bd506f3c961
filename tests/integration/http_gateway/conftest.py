from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bench.harness import ServerProcess


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client
