"""Parity contract: every transport and route gives the same answer for the same photo."""

from __future__ import annotations

from bench.harness import ServerProcess
from tests.integration.http_gateway.clients import assert_parity


def test_all_routes_and_rpcs_agree(server: ServerProcess, photos: dict[str, bytes]) -> None:
    assert_parity(server.grpc_address, server.http_url, photos)
