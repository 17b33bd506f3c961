"""The standalone gateway (`classify gateway --grpc-upstream`, its own process) answers as the server's own gateway does."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bench.harness import ServerProcess, real_photos, start_gateway
from tests.integration.http_gateway.clients import assert_parity


@pytest.fixture(scope="module")


def standalone_gateway(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    gateway = start_gateway(server.grpc_address, tmp_path_factory.mktemp("gateway"))
    yield gateway.http_url
    assert gateway.stop() == 0, gateway.log_path.read_text()


def test_standalone_gateway_agrees_with_grpc(server: ServerProcess, standalone_gateway: str) -> None:
    """`classify gateway --grpc-upstream` in front of a separate `classify serve` gives the same answers."""
    photos = {n: p for n, p in real_photos().items() if n in ("chelsea.png", "rocket.jpg")}
    assert_parity(server.grpc_address, standalone_gateway, photos)


def test_standalone_gateway_passes_errors_through(standalone_gateway: str) -> None:
    r = httpx.post(f"{standalone_gateway}/v1/classify", json={"image": "AAAA", "topK": 3}, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == 3 and "could not be decoded" in r.json()["message"]
    r = httpx.get(f"{standalone_gateway}/v1/models/nope", timeout=30)
    assert r.status_code == 404 and r.json()["code"] == 5
