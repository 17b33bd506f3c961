"""`classify cluster` without processes: rendering the Envoy template, and the restart back-off."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from service.tools.cluster.envoy_config import Endpoint, load_template, render
from service.tools.cluster.runner import CRASH_WINDOW_S, MAX_BACKOFF_S, Cluster, ClusterConfig, Replica


def _render(tmp_path: Path, replicas: list[Endpoint]) -> dict[str, Any]:
    return render(load_template(), replicas, listen_host="0.0.0.0", grpc_port=1, http_port=2, admin_port=3,
                  access_log=tmp_path / "access.log")


def test_render_lists_each_replica_as_a_static_endpoint_of_both_clusters(tmp_path: Path) -> None:
    replicas = [Endpoint("127.0.0.1", 5001, 6001), Endpoint("127.0.0.1", 5002, 6002)]
    config = _render(tmp_path, replicas)
    ports = {
        cluster["name"]: [e["endpoint"]["address"]["socket_address"]["port_value"]
                          for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
        for cluster in config["static_resources"]["clusters"]
    }
    assert ports == {"classify_grpc": [5001, 5002], "classify_http": [6001, 6002]}
    listeners = {item["name"]: item["address"]["socket_address"] for item in config["static_resources"]["listeners"]}
    assert listeners == {"grpc": {"address": "0.0.0.0", "port_value": 1}, "http": {"address": "0.0.0.0", "port_value": 2}}
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 3}


def test_render_writes_the_access_log_to_a_file_in_the_same_format(tmp_path: Path) -> None:
    template = load_template()
    config = _render(tmp_path, [Endpoint("127.0.0.1", 5001, 6001)])
    for rendered, original in zip(config["static_resources"]["listeners"], template["static_resources"]["listeners"],
                                  strict=True):
        (logger,) = rendered["filter_chains"][0]["filters"][0]["typed_config"]["access_log"]
        (before,) = original["filter_chains"][0]["filters"][0]["typed_config"]["access_log"]
        assert logger["typed_config"]["path"] == str(tmp_path / "access.log")
        assert logger["typed_config"]["log_format"] == before["typed_config"]["log_format"]


def test_render_needs_a_replica(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one replica"):
        _render(tmp_path, [])


class _Exited:
    """What the supervisor reads of a process that has exited (the unit under test is the supervisor)."""

    def __init__(self, code: int) -> None:
        self.returncode = code

    def poll(self) -> int:
        return self.returncode


def _supervisor(tmp_path: Path) -> tuple[Cluster, Replica, io.StringIO]:
    out = io.StringIO()
    config = ClusterConfig(replicas=1, repository=tmp_path, run_dir=tmp_path, envoy=tmp_path, cache_dir=tmp_path)
    replica = Replica(0, 1, 2, tmp_path / "replica-0.log")
    cluster = Cluster(config, out=out, replicas=[replica])
    return cluster, replica, out


def test_a_replica_that_keeps_dying_at_start_waits_longer_each_time(tmp_path: Path) -> None:
    cluster, replica, out = _supervisor(tmp_path)
    waits: list[float] = []
    for _ in range(7):
        replica.process, replica.started_at, replica.restart_at = _Exited(1), 100.0, None  # type: ignore[assignment]
        cluster._look_after(replica, now=101.0)  # died 1 s after starting
        assert replica.restart_at is not None
        waits.append(replica.restart_at - 101.0)
    assert waits == [2.0, 4.0, 8.0, 16.0, MAX_BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert "replica 0 exited with status 1 after 1.0 s; restarting in 2 s" in out.getvalue()


def test_a_replica_that_ran_a_while_restarts_after_a_second(tmp_path: Path) -> None:
    cluster, replica, _ = _supervisor(tmp_path)
    replica.backoff_s = MAX_BACKOFF_S
    replica.process, replica.started_at = _Exited(-9), 0.0  # type: ignore[assignment]
    cluster._look_after(replica, now=CRASH_WINDOW_S + 1)
    assert replica.restart_at == CRASH_WINDOW_S + 2


def test_no_restart_leaves_an_exited_replica_down(tmp_path: Path) -> None:
    cluster, replica, out = _supervisor(tmp_path)
    cluster.config.restart = False
    replica.process = _Exited(0)  # type: ignore[assignment]
    cluster._look_after(replica, now=50.0)
    assert replica.restart_at is None and out.getvalue() == ""
