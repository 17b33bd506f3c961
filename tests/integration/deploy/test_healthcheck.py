"""The image's HEALTHCHECK command, run against a real server."""

from __future__ import annotations

from bench.harness import ServerProcess, free_port
from tests.unit.deploy.test_manifests import run_healthcheck


def test_dockerfile_healthcheck_asks_grpc_health(server: ServerProcess) -> None:
    assert run_healthcheck(server.grpc_port) == 0, "HEALTHCHECK fails against a SERVING server"
    assert run_healthcheck(free_port()) != 0, "HEALTHCHECK passes with no server listening"
