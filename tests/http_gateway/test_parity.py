"""Parity contract: every transport and route gives the same answer for the same photo."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.http_gateway.clients import every_way
from tests.support import ServerProcess, real_photos, start_gateway


def _assert_parity(grpc_address: str, http_url: str, photos: dict[str, bytes]) -> None:
    ways = every_way(grpc_address, http_url)
    for name, image in photos.items():
        answers = {way: ask(image, 5) for way, ask in ways.items()}
        reference = answers["grpc Classify"]
        assert len(reference) == 5
        for way, answer in answers.items():
            assert [label for label, _ in answer] == [label for label, _ in reference], (name, way)
            # Equal as float32: JSON carries the float32's shortest decimal form.
            assert np.array_equal(
                np.float32([p for _, p in answer]), np.float32([p for _, p in reference])
            ), (name, way, answer, reference)


def test_all_routes_and_rpcs_agree(server: ServerProcess, photos: dict[str, bytes]) -> None:
    _assert_parity(server.grpc_address, server.http_url, photos)


@pytest.fixture(scope="module")
def standalone_gateway(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    gateway = start_gateway(server.grpc_address, tmp_path_factory.mktemp("gateway"))
    yield gateway.http_url
    assert gateway.stop() == 0, gateway.log_path.read_text()


def test_standalone_gateway_agrees_with_grpc(server: ServerProcess, standalone_gateway: str) -> None:
    """`classify gateway --grpc-upstream` in front of a separate `classify serve` gives the same answers."""
    photos = {n: p for n, p in real_photos().items() if n in ("chelsea.png", "rocket.jpg")}
    _assert_parity(server.grpc_address, standalone_gateway, photos)


def test_standalone_gateway_passes_errors_through(standalone_gateway: str) -> None:
    r = httpx.post(f"{standalone_gateway}/v1/classify", json={"image": "AAAA", "topK": 3}, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == 3 and "could not be decoded" in r.json()["message"]
    r = httpx.get(f"{standalone_gateway}/v1/models/nope", timeout=30)
    assert r.status_code == 404 and r.json()["code"] == 5
