"""The standalone gateway (`classify gateway --grpc-upstream`, its own process) answers as the server's own gateway does."""

from __future__ import annotations

import httpx

from bench.harness import ServerProcess, real_photos
from tests.integration.http_gateway.clients import assert_parity


def test_standalone_gateway_agrees_with_grpc(server: ServerProcess, standalone_gateway: str) -> None:
    """`classify gateway --grpc-upstream` in front of a separate `classify serve` gives the same answers."""
    photos = {n: p for n, p in real_photos().items() if n in ("chelsea.png", "rocket.jpg")}
    assert_parity(server.grpc_address, standalone_gateway, photos)


def test_standalone_gateway_passes_errors_through(standalone_gateway: str) -> None:
    r = httpx.post(f"{standalone_gateway}/v1/classify", json={"image": "AAAA", "topK": 3}, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == 3 and "could not be decoded" in r.json()["message"]
    r = httpx.get(f"{standalone_gateway}/v1/models/nope", timeout=30)
    assert r.status_code == 404 and r.json()["code"] == 5
