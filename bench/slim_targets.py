"""Issue #19's targets (serving without torch), measured against today's server in alternating rounds.

    .venv/bin/python -m bench.slim_targets                        # 3 rounds against a40899d, and the image
    .venv/bin/python -m bench.slim_targets --rounds 5 --no-image  # the host processes only

"Today" is --baseline (default a40899d: the last commit before issue #19's work, whose core and
gateway import torch). It runs from a `git worktree` of that commit with this venv, the same
weights (deterministic random-init ResNet18, a copy per tree so that neither reads the other's
graph) and the same load generator (this tree's `classify bench`). Both serve ResNet18 on
onnxruntime fp32 with its exported graph present: this tree's from `classify export`, today's
from an untimed first start. Each round runs both trees, the order alternating between rounds:

- `classify serve`: ready = seconds from process start to grpc.health.v1 SERVING (polled every
  20 ms); RSS idle, and sampled every 100 ms while `classify bench` runs a closed loop at
  concurrency 16 (grpc-unary, then http-multipart, --duration seconds each); img/s per mode.
- then that tree's `classify gateway --grpc-upstream` in front of that server: ready (/readyz
  200), RSS idle and sampled under http-multipart at concurrency 16.
- in the last round, RSS by component (/proc/PID/smaps grouped by mapping) of each process.

With the image (default classify-service:<version>, built by `make image`; needs a Docker
daemon: one is started as tests/e2e/image does where none answers): its size, `docker save | gzip`
size, what its bytes are, and per round a cold start (`docker run` with the Deployment's options
to SERVING on the published port) and RSS under the same load.

Prints the report and writes bench/results/NAME/ (summary.json, report.md; logs/ is not kept).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.run import REPO, free_port

BASELINE = "a40899d"
MODES = ("grpc-unary", "http-multipart")
CONCURRENCY = 16
TARGETS = {  # issue #19, part 5
    "image_mb": 500,
    "serve_rss_mb": 350,
    "gateway_rss_mb": 100,
    "ready_s": 2.0,
}
MIB = 1 << 20
STARTED_WALL: dict[str, float] = {}
READY_TIMEOUT_S = 180.0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _mb(mib: float) -> float:
    return mib * MIB / 1e6


def rss_mib(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak since start) of ``pid``, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# Mappings of /proc/PID/smaps by what they are. Anonymous memory (heap, thread arenas, ONNX
# Runtime's arena, thread stacks, Python objects) cannot be told apart here: bench/memory_variants.py
# attributes it by switching settings.
_COMPONENTS = (
    ("torch", re.compile(r"libtorch|libc10|libgomp|libcu|libnv|libcudnn|libnccl|_C\.cpython|triton")),
    ("ONNX Runtime", re.compile(r"onnxruntime|libonnxruntime")),
    ("gRPC", re.compile(r"cygrpc|grpc")),
    ("numpy and OpenBLAS", re.compile(r"numpy|openblas|gfortran|quadmath|_multiarray|_umath")),
    ("Pillow and image codecs", re.compile(r"PIL|pillow|_imaging|libjpeg|libpng|libwebp|libtiff|libopenjp|liblzma|libz\b|libz\.")),
    ("pydantic-core", re.compile(r"pydantic_core")),
    ("Python", re.compile(r"python3|libpython")),
)


def rss_by_component(pid: int) -> dict[str, float]:
    """RSS (MiB) of ``pid`` grouped: anonymous memory, then file mappings by library."""
    groups: collections.Counter[str] = collections.Counter()
    name = "anonymous"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split(maxsplit=5)
            path = parts[5] if len(parts) > 5 else ""
            if not path.startswith("/"):
                name = "anonymous (heap, arenas, stacks)"
            else:
                name = next((label for label, pattern in _COMPONENTS if pattern.search(path)), "other files")
        elif line.startswith("Rss:"):
            groups[name] += int(line.split()[1])
    return {label: kib / 1024 for label, kib in groups.most_common()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far (/proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_PREPROCESSED = re.compile(r'^classify_preprocess_seconds_count\{model="[^"]*"\} ([0-9.e+]+)$', re.MULTILINE)


def images_preprocessed(http_url: str) -> float:
    """Images the server has decoded and preprocessed so far (its /metrics), every model together."""
    text = httpx.get(f"{http_url}/metrics", timeout=10).text
    return sum(float(value) for value in _PREPROCESSED.findall(text))


def torch_mapped(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


class Sampler:
    """VmRSS of a process every 100 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples = pid, [rss_mib(pid)[0]]
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.1):
            try:
                self.samples.append(rss_mib(self.pid)[0])
            except OSError:
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


class Tree:
    """A source tree to run `classify` from: this one, or a worktree of the baseline commit."""

    def __init__(self, label: str, root: Path) -> None:
        self.label, self.root = label, root

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "service.cli", *args]

    def env(self) -> dict[str, str]:
        # The tree's own Python client first: `classify` imports it (its predict command), and a
        # client generated from another revision of the proto clashes with the tree's gen/.
        path = [self.root, self.root / "gen", self.root / "clients" / "python" / "src"]
        return {**os.environ, "PYTHONPATH": ":".join(str(p) for p in path if p.is_dir()), "PYTHONUNBUFFERED": "1"}

    def start(self, name: str, args: list[str], logs: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (logs / f"{name}.log").open("wb")
        return subprocess.Popen(self.command(*args), cwd=self.root, env={**self.env(), **(extra_env or {})}, stdout=log,
                                stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait(name: str, process: subprocess.Popen[bytes] | None, ready: Callable[[], bool], started: float) -> float:
    """Seconds from ``started`` until ``ready()``; polled every 20 ms."""
    while time.monotonic() - started < READY_TIMEOUT_S:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"slim_targets: {name} exited with {process.returncode} before it was ready")
        try:
            if ready():
                return time.monotonic() - started
        except (grpc.RpcError, httpx.HTTPError):
            pass
        time.sleep(0.02)
    raise SystemExit(f"slim_targets: {name} not ready after {READY_TIMEOUT_S:.0f} s")


def _serving(address: str) -> Callable[[], bool]:
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    return lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING


def load(out: Path, *, grpc_address: str | None, http_url: str, modes: tuple[str, ...], duration: str) -> dict[str, float]:
    """This tree's `classify bench`: closed loop at concurrency 16; img/s by mode."""
    command = [sys.executable, "-m", "service.cli", "bench", "--http", http_url, "--modes", ",".join(modes),
               "--concurrency", str(CONCURRENCY), "--duration", duration, "--max-requests", "5000", "--warmup", "2",
               "--no-reference", "--out", str(out)]
    if grpc_address:
        command[4:4] = ["--grpc", grpc_address]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "bench.log").open("wb") as log:
        subprocess.run(command, cwd=REPO, check=True, stdout=log, stderr=subprocess.STDOUT,
                       env={**Tree("load", REPO).env(), "MPLBACKEND": "Agg"})
    runs = json.loads((out / "results.json").read_text())["runs"]
    return {r["mode"]: r["throughput"] for r in runs if r["target"] == "service"}


# Where the time to ready goes: log lines (text format, millisecond timestamps) that end each phase.
PHASES = (
    ("interpreter and imports", "starting with settings"),
    ("settings, servers, ONNX Runtime session", "loaded model"),
    ("warm-up", "warmed up model"),
    ("to ready", "ready (model control"),
)
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


_IMPORT_TIME = re.compile(r"^import time:\s+(\d+) \|\s+\d+ \|\s+(\S.*)$")


def import_profile(tree: Tree, weights: Path, logs: Path) -> dict[str, float]:
    """Seconds of import (self time, by top-level package) in one untimed start with PYTHONPROFILEIMPORTTIME."""
    name = f"imports-{'this' if tree.root == REPO else 'today'}"
    with serving(tree, weights, logs, name, {"PYTHONPROFILEIMPORTTIME": "1"}):
        pass
    totals: dict[str, float] = collections.defaultdict(float)
    for line in (logs / f"{name}.log").read_text(errors="replace").splitlines():
        match = _IMPORT_TIME.match(line)
        if match:
            totals[match.group(2).strip().split(".")[0]] += int(match.group(1)) / 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def startup_phases(log: Path, started_wall: float) -> dict[str, float]:
    """Seconds spent in each of PHASES, from the server's log and the wall-clock time it was started."""
    phases: dict[str, float] = {}
    previous = started_wall
    lines = log.read_text(errors="replace").splitlines()
    for phase, marker in PHASES:
        line = next((line for line in lines if marker in line and _STAMP.match(line)), None)
        if line is None:
            break
        match = _STAMP.match(line)
        assert match
        stamp = time.mktime(time.strptime(match.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + int(match.group(1)[20:]) / 1000
        phases[phase], previous = stamp - previous, stamp
    return phases


@contextmanager
def serving(
    tree: Tree, weights: Path, logs: Path, name: str, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str, str, float]]:
    """`classify serve` of ``tree`` with ResNet18 on onnxruntime; yields (process, gRPC address, HTTP URL, ready s).

    The wall-clock start is kept in ``STARTED_WALL[name]`` for startup_phases().
    """
    grpc_port, http_port = free_port(), free_port()
    STARTED_WALL[name] = time.time()
    started = time.monotonic()
    process = tree.start(name, [
        "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        "--weights", str(weights), "--model", "resnet18", "--backend", "onnxruntime",
        "--cache-dir", str(weights.parent / "cache"), "--log-format", "text",
    ], logs, extra_env)
    try:
        ready = _wait(name, process, _serving(f"127.0.0.1:{grpc_port}"), started)
        yield process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", ready
    finally:
        _stop(process)


def serve_round(tree: Tree, weights: Path, work: Path, duration: str, components: bool) -> dict[str, Any]:
    """`classify serve` of ``tree`` under load, then ``tree``'s `classify gateway` in front of it."""
    name = f"{work.name}-serve"
    with serving(tree, weights, work.parent, name) as (process, grpc_address, http_url, ready):
        cpu_to_ready = cpu_seconds(process.pid)
        idle = rss_mib(process.pid)[0]
        cpu_before, images_before = cpu_seconds(process.pid), images_preprocessed(http_url)
        with Sampler(process.pid) as sampler:
            throughput = load(work / "serve", grpc_address=grpc_address, http_url=http_url, modes=MODES, duration=duration)
        cpu_ms_per_image = 1000 * (cpu_seconds(process.pid) - cpu_before) / (images_preprocessed(http_url) - images_before)
        after, peak = rss_mib(process.pid)
        served: dict[str, Any] = {
            "ready_s": ready, "cpu_to_ready_s": cpu_to_ready, "startup_phases_s": startup_phases(work.parent / f"{name}.log", STARTED_WALL[name]),
            "rss_idle_mib": idle, "rss_load_max_mib": max(sampler.samples),
            "rss_after_mib": after, "vmhwm_mib": peak, "throughput": throughput, "cpu_ms_per_image": cpu_ms_per_image,
            "torch_mapped": torch_mapped(process.pid),
        }
        if components:
            served["rss_by_component_mib"] = rss_by_component(process.pid)
        gatewayed = gateway_round(tree, grpc_address, work, duration, components)
    return {"serve": served, "gateway": gatewayed}


def gateway_round(tree: Tree, upstream: str, work: Path, duration: str, components: bool) -> dict[str, Any]:
    http_port = free_port()
    name = f"{work.name}-gateway"
    started = time.monotonic()
    process = tree.start(name, ["gateway", "--host", "127.0.0.1", "--http-port", str(http_port),
                                "--grpc-upstream", upstream, "--log-format", "text"], work.parent)
    url = f"http://127.0.0.1:{http_port}"
    try:
        ready = _wait(name, process, lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200, started)
        idle = rss_mib(process.pid)[0]
        with Sampler(process.pid) as sampler:
            throughput = load(work / "gateway", grpc_address=None, http_url=url, modes=("http-multipart",), duration=duration)
        result: dict[str, Any] = {
            "ready_s": ready, "rss_idle_mib": idle, "rss_load_max_mib": max(sampler.samples),
            "vmhwm_mib": rss_mib(process.pid)[1], "throughput": throughput, "torch_mapped": torch_mapped(process.pid),
        }
        if components:
            result["rss_by_component_mib"] = rss_by_component(process.pid)
        return result
    finally:
        _stop(process)


# -- the image --------------------------------------------------------------------------------

def image_figures(image: str, rounds: int, duration: str, logs: Path) -> dict[str, Any] | None:
    """Size, contents, and per round a cold start and RSS under load of the slim image; None without Docker."""
    from bench import containers
    from bench.dockerd import answers, docker_daemon

    docker = os.environ.get("CLASSIFY_DOCKER") or shutil.which("docker") or "/usr/bin/docker"
    if not answers(docker) and (os.geteuid() != 0 or shutil.which("dockerd") is None):
        print("slim_targets: no Docker daemon answers and none can be started: skipping the image's figures", file=sys.stderr)
        return None
    with docker_daemon(docker, logs / "dockerd.log"):
        def size_of(tag: str) -> int | None:
            inspected = subprocess.run([docker, "image", "inspect", "--format", "{{.Size}}", tag],
                                       capture_output=True, text=True, timeout=60)
            return int(inspected.stdout) if inspected.returncode == 0 else None

        size = size_of(image)
        if size is None:
            print(f"slim_targets: no image {image} (make image): skipping the image's figures", file=sys.stderr)
            return None
        contents = containers.image_contents(docker, image)
        figures: dict[str, Any] = {
            "image": image, "size_bytes": size, "gzip_bytes": containers.compressed_bytes(docker, image),
            "contents": contents, "contents_line": containers.describe_contents(contents),
            "torch_image": containers.torch_image_name(), "torch_size_bytes": size_of(containers.torch_image_name()),
            "runs": [],
        }
        for i in range(rounds):
            container = containers.run(docker, image)
            try:
                grpc_address = f"127.0.0.1:{container.port(50051)}"
                ready = _wait("the image", None, _serving(grpc_address), container.started_at)
                pid = container.inspect()["State"]["Pid"]
                cpu_to_ready = cpu_seconds(pid)
                idle = rss_mib(pid)[0]
                with Sampler(pid) as sampler:
                    throughput = load(logs / f"image-round{i + 1}", grpc_address=grpc_address,
                                      http_url=f"http://127.0.0.1:{container.port(8000)}", modes=MODES, duration=duration)
                figures["runs"].append({"cold_start_s": ready, "cpu_to_ready_s": cpu_to_ready, "rss_idle_mib": idle,
                                        "rss_load_max_mib": max(sampler.samples), "throughput": throughput})
            finally:
                container.remove()
        return figures


# -- report -----------------------------------------------------------------------------------

def _status(value: float, goal: float, lower_is_better: bool = True, digits: int = 0) -> str:
    met = value <= goal if lower_is_better else value >= goal
    return "met" if met else f"NOT met, by {value - goal:+.{digits}f}"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(summary: dict[str, Any]) -> str:
    rounds = summary["rounds"]
    base, cand = summary["baseline_label"], summary["candidate_label"]

    def series(tree: str, part: str, key: str) -> list[float]:
        return [r[tree][part][key] for r in rounds]

    def fmt(values: list[float], digits: int = 0) -> str:
        return ", ".join(f"{v:.{digits}f}" for v in values)

    lines = [
        "# Serving without torch: issue #19's targets",
        "",
        f"`{summary['command']}` on {summary['cpus']} CPUs (a machine shared with other work), "
        f"{summary['date']}. Today = `{summary['baseline']}` ({base}), run from a git worktree with the same venv, "
        f"weights and load; this tree = {cand}. ResNet18 (deterministic random-init weights) on onnxruntime fp32, "
        f"its exported graph present; closed loop at concurrency {CONCURRENCY}, {summary['duration']} s a mode; "
        f"{len(rounds)} rounds, the order of the trees alternating. MB = 10^6 bytes (RSS read in KiB, /proc/PID/status).",
        "",
        "| target | goal | this tree (median; rounds) | today (median) | status |",
        "|---|---|---:|---:|---|",
    ]
    serve_rss = [_mb(v) for v in series(cand, "serve", "rss_load_max_mib")]
    gateway_rss = [_mb(v) for v in series(cand, "gateway", "rss_load_max_mib")]
    ready = series(cand, "serve", "ready_s")
    lines.append(f"| `classify serve` RSS under load, MB | <= {TARGETS['serve_rss_mb']} | "
                 f"{_median(serve_rss):.0f} ({fmt(serve_rss)}) | "
                 f"{_median([_mb(v) for v in series(base, 'serve', 'rss_load_max_mib')]):.0f} | "
                 f"{_status(_median(serve_rss), TARGETS['serve_rss_mb'])} |")
    lines.append(f"| `classify gateway` RSS under load, MB | <= {TARGETS['gateway_rss_mb']} | "
                 f"{_median(gateway_rss):.0f} ({fmt(gateway_rss)}) | "
                 f"{_median([_mb(v) for v in series(base, 'gateway', 'rss_load_max_mib')]):.0f} | "
                 f"{_status(_median(gateway_rss), TARGETS['gateway_rss_mb'])} |")
    lines.append(f"| `classify serve` ready from start, graph present, s | <= {TARGETS['ready_s']} | "
                 f"{_median(ready):.2f} ({fmt(ready, 2)}) | {_median(series(base, 'serve', 'ready_s')):.2f} | "
                 f"{_status(_median(ready), TARGETS['ready_s'], digits=2)} |")
    for mode in MODES:
        ratios = [r[cand]["serve"]["throughput"][mode] / r[base]["serve"]["throughput"][mode] for r in rounds]
        status = _status(_median(ratios), 1.0, False, digits=3)
        if status != "met" and min(ratios) <= 1.0 <= max(ratios):  # a miss smaller than the rounds' own spread
            status += f"; 1 lies within the rounds' range ({min(ratios):.3f} to {max(ratios):.3f}): no measurable difference"
        lines.append(f"| serving throughput / today's, {mode}, c{CONCURRENCY} | >= 1.00 | "
                     f"{_median(ratios):.3f} ({fmt(ratios, 3)}) | 1 | {status} |")
    cpu = [r[cand]["serve"]["cpu_ms_per_image"] / r[base]["serve"]["cpu_ms_per_image"] for r in rounds]
    lines.append(f"| (how much CPU the server spends an image, this tree / today's; both modes, warm-up included) | - | "
                 f"{_median(cpu):.2f} ({fmt(cpu, 2)}) | 1 | (no target) |")
    image = summary.get("image")
    if image:
        size_mb = image["size_bytes"] / 1e6
        torch_mb = f"{image['torch_size_bytes'] / 1e6:.0f} (the torch target)" if image.get("torch_size_bytes") else "-"
        lines.append(f"| image size (`docker image inspect`), MB | <= {TARGETS['image_mb']} | {size_mb:.0f} | "
                     f"{torch_mb} | {_status(size_mb, TARGETS['image_mb'])} |")
    lines += ["", "## Every round", "",
              "| round | tree | serve ready s | serve RSS idle / load max / VmHWM, MB | img/s " + " / ".join(MODES)
              + " | server CPU ms an image | gateway ready s | gateway RSS idle / load max, MB | gateway img/s "
              "| torch mapped (serve, gateway) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i, r in enumerate(rounds, 1):
        for tree in r["order"]:
            s, g = r[tree]["serve"], r[tree]["gateway"]
            lines.append(
                f"| {i} | {tree} | {s['ready_s']:.2f} | {_mb(s['rss_idle_mib']):.0f} / {_mb(s['rss_load_max_mib']):.0f} / "
                f"{_mb(s['vmhwm_mib']):.0f} | {_per_mode(s['throughput'])} | {s['cpu_ms_per_image']:.0f} | "
                f"{g['ready_s']:.2f} | {_mb(g['rss_idle_mib']):.0f} / {_mb(g['rss_load_max_mib']):.0f} | "
                f"{g['throughput']['http-multipart']:.1f} | {s['torch_mapped']}, {g['torch_mapped']} |")
    lines += ["", "## Where the time to ready goes, s (median of rounds; from the server's log timestamps)", "",
              "| tree | " + " | ".join(phase for phase, _ in PHASES) + " | health SERVING seen | CPU s used by then |",
              "|---|" + "---:|" * (len(PHASES) + 2)]
    for tree in (cand, base):
        cells = []
        for phase, _ in PHASES:
            values = [r[tree]["serve"]["startup_phases_s"].get(phase) for r in rounds]
            known = [v for v in values if v is not None]
            cells.append(f"{_median(known):.2f}" if known else "-")
        lines.append(f"| {tree} | " + " | ".join(cells) + f" | {_median(series(tree, 'serve', 'ready_s')):.2f} | "
                     f"{_median(series(tree, 'serve', 'cpu_to_ready_s')):.2f} |")
    lines += ["", "Import time by top-level package (self time, s; one extra start with PYTHONPROFILEIMPORTTIME=1, which "
              "itself slows imports): "]
    for tree in (cand, base):
        profile = summary["import_profile_s"][tree]
        top = list(profile.items())[:10]
        lines.append(f"- {tree}: total {sum(profile.values()):.2f}; " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    last = rounds[-1]
    lines += ["", "## RSS by component at the end of the last round's load, MB (/proc/PID/smaps)", "",
              "| process | " + " | ".join(["total", *sorted(_component_names(last))]) + " |",
              "|---|" + "---:|" * (1 + len(_component_names(last)))]
    for tree in (cand, base):
        for part in ("serve", "gateway"):
            parts = last[tree][part]["rss_by_component_mib"]
            total = sum(parts.values())
            cells = [f"{_mb(parts.get(name, 0.0)):.0f}" for name in sorted(_component_names(last))]
            lines.append(f"| {part}, {tree} | {_mb(total):.0f} | " + " | ".join(cells) + " |")
    if image:
        runs = image["runs"]
        lines += ["", f"## The image: {image['image']}", "",
                  f"- size {image['size_bytes'] / 1e6:.0f} MB ({image['size_bytes']} bytes), "
                  f"`docker save | gzip -6` {image['gzip_bytes'] / 1e6:.0f} MB (about what a node pulls)",
                  f"- what the bytes are, MB: {image['contents_line']}",
                  f"- cold start, `docker run` (the Deployment's options) to SERVING on the published port, s: "
                  f"median {_median([r['cold_start_s'] for r in runs]):.2f} "
                  f"({fmt([r['cold_start_s'] for r in runs], 2)}); bundled efficientnet_lite0; CPU s used by "
                  f"`classify serve` by then: {fmt([r['cpu_to_ready_s'] for r in runs], 2)}",
                  f"- RSS idle / under load (concurrency {CONCURRENCY}, {' then '.join(MODES)}), MB: "
                  + "; ".join(f"{_mb(r['rss_idle_mib']):.0f} / {_mb(r['rss_load_max_mib']):.0f}" for r in runs),
                  "- img/s " + " / ".join(MODES) + " (--cpus 2): "
                  + "; ".join(_per_mode(r["throughput"]) for r in runs)]
    lines += ["", f"Load average (1, 5, 15 min): {'; '.join(summary['load_average'])}."]
    return "\n".join(lines) + "\n"


def _per_mode(throughput: dict[str, float]) -> str:
    return " / ".join(f"{throughput[mode]:.1f}" for mode in MODES)


def _component_names(round_: dict[str, Any]) -> set[str]:
    return {name for tree in round_["order"] for part in ("serve", "gateway")
            for name in round_[tree][part]["rss_by_component_mib"]}


# -- main -------------------------------------------------------------------------------------

def prepare(scratch: Path, baseline: Tree, candidate: Tree, logs: Path) -> dict[str, Path]:
    """Random-init ResNet18 weights, a copy per tree; this tree's graph by `classify export`, today's by a first start."""
    from bench.harness import random_resnet18_weights  # torch: only to generate them

    source = random_resnet18_weights(scratch)
    weights: dict[str, Path] = {}
    for tree in (baseline, candidate):
        folder = scratch / ("today" if tree is baseline else "this")
        folder.mkdir()
        weights[tree.label] = Path(shutil.copy(source, folder / source.name))
    subprocess.run(candidate.command("export", "resnet18", "--weights", str(weights[candidate.label])),
                   cwd=candidate.root, env=candidate.env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with serving(baseline, weights[baseline.label], logs, "baseline-first-start"):
        pass  # today's first start exports the graph beside the weights
    for tree in (baseline, candidate):
        graphs = list(weights[tree.label].parent.glob("*.onnx"))
        assert graphs, f"no exported graph beside {weights[tree.label]}"
    return weights


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the baseline's worktree is removed
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="slim-targets")
    parser.add_argument("--baseline", default=BASELINE, help="the commit that is 'today' (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="10", help="seconds per mode and round")
    parser.add_argument("--image", default=None, help="the slim image (default: what `make image` tags)")
    parser.add_argument("--no-image", action="store_true", help="skip the image's figures")
    args = parser.parse_args(argv)
    out = REPO / "bench" / "results" / args.name
    logs = out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    candidate = Tree(f"this tree ({commit}{' + changes' if dirty else ''})", REPO)
    load_average = [f"before: {_load()}"]
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="classify-slim-") as scratch_name:
        scratch = Path(scratch_name)
        worktree = scratch / "baseline-tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline], cwd=REPO, check=True,
                       capture_output=True)
        try:
            baseline = Tree(f"today ({args.baseline})", worktree)
            (scratch / "weights").mkdir()
            weights = prepare(scratch / "weights", baseline, candidate, logs)
            for i in range(args.rounds):
                order = [baseline, candidate] if i % 2 == 0 else [candidate, baseline]
                result: dict[str, Any] = {"order": [tree.label for tree in order]}
                last = i == args.rounds - 1
                for tree in order:
                    work = logs / f"round{i + 1}-{'today' if tree is baseline else 'this'}"
                    work.mkdir()
                    result[tree.label] = measured = serve_round(tree, weights[tree.label], work, args.duration, last)
                    served, gatewayed = measured["serve"], measured["gateway"]
                    print(f"slim_targets: round {i + 1} {tree.label}: serve ready {served['ready_s']:.2f} s, "
                          f"RSS load max {_mb(served['rss_load_max_mib']):.0f} MB, img/s {served['throughput']}; "
                          f"gateway RSS load max {_mb(gatewayed['rss_load_max_mib']):.0f} MB", file=sys.stderr)
                rounds.append(result)
                load_average.append(f"after round {i + 1}: {_load()}")
            profiles = {tree.label: import_profile(tree, weights[tree.label], logs) for tree in (candidate, baseline)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, capture_output=True)
    image = None
    if not args.no_image:
        version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        image = image_figures(args.image or f"classify-service:{version}", args.rounds, args.duration, logs)
        load_average.append(f"after the image: {_load()}")
    summary = {
        "command": "python -m bench.slim_targets " + shlex.join(argv) if argv else "python -m bench.slim_targets",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
        "baseline": args.baseline, "baseline_label": baseline.label, "candidate_label": candidate.label,
        "duration": args.duration, "targets": TARGETS, "rounds": rounds, "import_profile_s": profiles, "image": image,
        "load_average": load_average,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = report(summary)
    (out / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
