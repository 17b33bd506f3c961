"""Driving `classify cluster` from a test: its printed endpoints, Envoy's admin view, and client load."""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.harness import REPO
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

ARTIFACTS = REPO / "test-artifacts"
REPLICA_LINE = re.compile(r"^\s+replica (\d+)\s+pid (\d+)\s+gRPC 127\.0\.0\.1:(\d+)\s+HTTP http://127\.0\.0\.1:(\d+)")


@dataclass
class ReplicaView:
    index: int
    pid: int
    grpc_port: int
    http_port: int

    @property
    def hosts(self) -> dict[str, str]:
        """Envoy's cluster name -> this replica's address in it."""
        return {"classify_grpc": f"127.0.0.1:{self.grpc_port}", "classify_http": f"127.0.0.1:{self.http_port}"}


class ClusterProcess:
    """`classify cluster` as a subprocess; its stdout is read line by line on a thread."""

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self.replicas: dict[int, ReplicaView] = {}
        self._changed = threading.Condition()
        self.log_path = log_path
        self.process = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                with self._changed:
                    self.lines.append((time.monotonic(), line.rstrip("\n")))
                    if match := REPLICA_LINE.match(line):
                        index, pid, grpc_port, http_port = map(int, match.groups())
                        self.replicas[index] = ReplicaView(index, pid, grpc_port, http_port)
                    self._changed.notify_all()

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_for(self, pattern: str, timeout: float, after: float = 0.0) -> tuple[float, re.Match[str]]:
        """The first line printed after ``after`` (monotonic) that matches; its time and match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for at, line in self.lines:
                    if at >= after and (match := regex.search(line)):
                        return at, match
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"classify cluster exited ({self.process.returncode}):\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.output()}")
                self._changed.wait(min(left, 0.5))

    def value(self, pattern: str) -> str:
        return self.wait_for(pattern, 0)[1].group(1)

    def interrupt(self, timeout: float = 120) -> int:
        """Ctrl-C, as a terminal sends it, and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code


class EnvoyAdmin:
    def __init__(self, url: str) -> None:
        self.url = url

    def hosts(self) -> dict[str, dict[str, dict[str, Any]]]:
        """cluster -> "host:port" -> {"flags": [...], "rq_total": n, "rq_active": n, "cx_connect_fail": n}."""
        clusters = httpx.get(f"{self.url}/clusters", params={"format": "json"}, timeout=5).json()
        view: dict[str, dict[str, dict[str, Any]]] = {}
        for status in clusters.get("cluster_statuses", []):
            for host in status.get("host_statuses", []):
                address = host["address"]["socket_address"]
                stats = {s["name"]: int(s.get("value", 0)) for s in host.get("stats", [])}
                health = host.get("health_status", {})
                flags = [name for name, value in health.items() if value is True]
                if health.get("eds_health_status", "HEALTHY") != "HEALTHY":
                    flags.append(health["eds_health_status"])
                view.setdefault(status["name"], {})[f"{address['address']}:{address['port_value']}"] = {
                    "flags": flags, **stats,
                }
        return view

    def flags(self, replica: ReplicaView) -> dict[str, list[str]]:
        view = self.hosts()
        return {cluster: view[cluster][host]["flags"] for cluster, host in replica.hosts.items()}

    def counter(self, replica: ReplicaView, name: str) -> int:
        view = self.hosts()
        return sum(view[cluster][host].get(name, 0) for cluster, host in replica.hosts.items())

    def stat(self, name: str) -> int:
        text = httpx.get(f"{self.url}/stats", params={"filter": f"^{re.escape(name)}$"}, timeout=5).text
        match = re.search(r": (\d+)", text)
        return int(match.group(1)) if match else 0

    def wait_until(self, check: Callable[[dict[str, dict[str, dict[str, Any]]]], bool], timeout: float,
                   poll: float = 0.05) -> float:
        """Seconds until ``check(hosts())`` holds; fails after ``timeout``."""
        started = time.monotonic()
        while True:
            view = self.hosts()
            if check(view):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"Envoy's hosts did not reach the expected state within {timeout} s: {view}")
            time.sleep(poll)


@dataclass
class Call:
    transport: str
    started: float
    ended: float
    outcome: str  # "ok" or an error code / HTTP status / exception name
    version: str = ""


@dataclass
class Load:
    """Closed-loop classify calls through Envoy: ``threads`` gRPC clients and as many HTTP clients."""

    grpc_address: str
    http_url: str
    image: bytes
    threads: int = 2
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._grpc, daemon=True) for _ in range(self.threads)]
        self._workers += [threading.Thread(target=self._http, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(90)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _grpc(self) -> None:
        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = pb_grpc.ClassifierServiceStub(channel)
            request = pb.ClassifyRequest(image=self.image, top_k=3)
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    reply = stub.Classify(request, timeout=60)
                    call = Call("grpc", started, time.monotonic(), "ok" if len(reply.predictions) == 3 else "bad reply",
                                reply.model_version)
                except grpc.RpcError as error:
                    call = Call("grpc", started, time.monotonic(), f"{error.code().name}: {error.details()}")
                self._record(call)

    def _http(self) -> None:
        body = {"image": base64.b64encode(self.image).decode(), "topK": 3}
        with httpx.Client(base_url=self.http_url, timeout=60) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    reply = client.post("/v1/classify", json=body)
                    if reply.status_code == 200:
                        call = Call("http", started, time.monotonic(), "ok", reply.json().get("modelVersion", ""))
                    else:
                        call = Call("http", started, time.monotonic(), f"{reply.status_code}: {reply.text[:200]}")
                except httpx.HTTPError as error:
                    call = Call("http", started, time.monotonic(), f"{type(error).__name__}: {error}")
                self._record(call)

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def wait_calls(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` more calls have finished (the load is really flowing)."""
        target = len(self.snapshot()) + count
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < target:
            assert time.monotonic() < deadline, f"fewer than {count} calls finished in {timeout} s"
            time.sleep(0.05)


def failures(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.outcome != "ok"]


def summary(calls: list[Call]) -> str:
    by_transport = {t: [c for c in calls if c.transport == t] for t in ("grpc", "http")}
    text = ", ".join(f"{t} {len(cs)} calls {len(failures(cs))} failed" for t, cs in by_transport.items())
    kinds = sorted({c.outcome.split(":")[0] for c in failures(calls)})
    return text + (f" ({', '.join(kinds)})" if kinds else "")


class Figures:
    """Figures the tests print and append to test-artifacts/scaleout.txt (quoted in docs/scaling-out.md)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(exist_ok=True)

    def record(self, scenario: str, text: str) -> None:
        line = f"{scenario}: {text}"
        print(line, file=sys.stderr)
        with self.path.open("a") as file:
            file.write(line + "\n")
