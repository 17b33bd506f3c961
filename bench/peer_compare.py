"""`classify serve` (default settings) against BentoML and Ray Serve, same model and load, alternating rounds.

    .venv/bin/python -m bench.peer_compare --weights W                        # 2 rounds, 8 s a run
    .venv/bin/python -m bench.peer_compare --rounds 1 --duration 2 --name peers-smoke

Each peer lives in its own venv under bench/.venvs/ (made here from bench/peers/*-requirements.txt,
remade when that file changes; never .venv). Each round starts one server at a time on 127.0.0.1
(ours, then each peer; the order reverses every other round so drift hits all alike), waits until
it answers a real photo, drives it with `classify bench` (the same closed-loop load generator,
images, top-K and client for all) at concurrency 1 and 16, and stops it: ours over HTTP multipart
and gRPC unary with the in-process pipeline as a reference, the peers over their HTTP multipart API.
All servers load the same ResNet18 state dict (--weights, else the official file when present, else
the tests' deterministic random-init one). Writes bench/results/NAME/ (report.md, summary.json, each
round's `classify bench` output, the servers' logs) and prints the targets, ratios within a round.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.run import REPO, free_port, start, stop, wait_until, weights_file

VENVS = REPO / "bench" / ".venvs"
PEERS_DIR = REPO / "bench" / "peers"
SERVICE = "service"
OUR_MODES = ("http-multipart", "grpc-unary")
CONCURRENCY = (1, 16)


@dataclass(frozen=True)
class Peer:
    """A peer server: its venv's requirements and how to start it on a port."""

    name: str
    command: Callable[[Path, int], list[str]]  # (venv python, port) -> argv
    settings: str  # every setting, for the report

    @property
    def requirements(self) -> Path:
        return PEERS_DIR / f"{self.name}-requirements.txt"

    @property
    def venv(self) -> Path:
        return VENVS / self.name


PEERS = {
    "bentoml": Peer(
        "bentoml",
        lambda python, port: [str(python.parent / "bentoml"), "serve", "bench.peers.bentoml_service:ImageClassifier",
                              "--host", "127.0.0.1", "--port", str(port)],
        "BentoML 1.4.40, one service, `workers=1`, `resources={cpu: 2}`, torch on 2 intra-op threads, "
        "adaptive batching `batchable=True, max_batch_size=8, max_latency_ms=10000`, the image as a multipart "
        "part decoded to PIL by BentoML, torchvision preprocessing in the batch (bench/peers/bentoml_service.py)",
    ),
    "rayserve": Peer(
        "rayserve",
        lambda python, port: [str(python), "-m", "bench.peers.rayserve_app", "--port", str(port)],
        "Ray Serve 2.60.0, local Ray with 2 CPUs, FastAPI ingress, one replica with `num_cpus=2`, "
        "`max_ongoing_requests=64`, torch on 2 intra-op threads, `@serve.batch(max_batch_size=8, "
        "batch_wait_timeout_s=0.002)`, decoding and preprocessing per request in a thread, the forward pass "
        "in a thread (bench/peers/rayserve_app.py)",
    ),
}


def round_orders(targets: Sequence[str], rounds: int) -> list[list[str]]:
    """The order servers are measured in each round: as given, then reversed, alternately."""
    return [list(targets) if i % 2 == 0 else list(reversed(targets)) for i in range(rounds)]


def requirements_digest(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def venv_is_current(peer: Peer) -> bool:
    """The venv exists and was made from the requirements file as it is now."""
    stamp = peer.venv / ".requirements-sha256"
    return (peer.venv / "bin" / "python").is_file() and stamp.is_file() and \
        stamp.read_text().strip() == requirements_digest(peer.requirements)


def ensure_venv(peer: Peer) -> Path:
    """The peer's venv python, made (or remade) from its requirements file when not current."""
    python = peer.venv / "bin" / "python"
    if venv_is_current(peer):
        return python
    print(f"peer_compare: making {peer.venv} from {peer.requirements.name} (minutes, once)", file=sys.stderr)
    # The base interpreter, not .venv's: the peer's packages never touch .venv.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(peer.venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(peer.requirements)], check=True)
    (peer.venv / ".requirements-sha256").write_text(requirements_digest(peer.requirements) + "\n")
    return python


def _bench(out: Path, *flags: str) -> list[dict]:
    subprocess.run([sys.executable, "-m", "service.cli", "bench", "--out", str(out), *flags],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())["runs"]


def _load_flags(args: argparse.Namespace) -> list[str]:
    return ["--concurrency", ",".join(map(str, CONCURRENCY)), "--duration", str(args.duration),
            "--max-requests", "5000", "--warmup", str(args.warmup)]


def measure_service(weights: Path, out: Path, logs: Path, args: argparse.Namespace) -> list[dict]:
    """`classify serve` with its default settings; HTTP multipart and gRPC unary, plus the in-process pipeline."""
    grpc_port, http_port = free_port(), free_port()
    processes = {SERVICE: start(f"{out.name}", [
        sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--http-port", str(http_port), "--weights", str(weights), "--model", "resnet18", "--log-format", "text",
    ], logs)}
    try:
        from classify_client.client import Client

        with Client(f"127.0.0.1:{grpc_port}") as client:
            wait_until(SERVICE, processes[SERVICE], client.ready, logs)
        return _bench(out, "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"http://127.0.0.1:{http_port}",
                      "--modes", ",".join(OUR_MODES), "--weights", str(weights), "--model", "resnet18",
                      *_load_flags(args))
    finally:
        stop(processes)


def measure_peer(peer: Peer, python: Path, weights: Path, out: Path, logs: Path, args: argparse.Namespace) -> list[dict]:
    """Start the peer in its venv, wait until it classifies a photo, load it over its HTTP API, stop it."""
    from service.tools.bench.images import benchmark_images

    port = free_port()
    env = {"PEER_WEIGHTS": str(weights), "PEER_THREADS": str(os.cpu_count() or 1), "PYTHONPATH": str(REPO),
           "BENTOML_HOME": str(VENVS / "bentoml-home"), "RAY_USAGE_STATS_ENABLED": "0"}
    processes = {peer.name: start(out.name, peer.command(python, port), logs, env)}
    url = f"http://127.0.0.1:{port}"
    photo = next(iter(benchmark_images().values()))

    def answers() -> bool:
        return httpx.post(f"{url}/classify", files={"file": ("p.jpg", photo, "image/jpeg")}, timeout=60).status_code == 200

    try:
        wait_until(peer.name, processes[peer.name], answers, logs)
        return _bench(out, "--only-peers", "--peer", f"{peer.name}={url}", "--modes", "peer-multipart",
                      "--no-reference", *_load_flags(args))
    finally:
        stop(processes)


Runs = Mapping[tuple[str, str, int], Mapping]


def index(runs: Sequence[Mapping]) -> dict[tuple[str, str, int], Mapping]:
    return {(r["target"], r["mode"], r["concurrency"]): r for r in runs}


@dataclass(frozen=True)
class Target:
    name: str
    goal: str  # ">= 1.5" or "<= 0.7"
    value: float
    against: str = ""  # the peer a ratio was taken against (the better one in that round)

    @property
    def met(self) -> bool:
        sign, bound = self.goal.split()
        return self.value >= float(bound) if sign == ">=" else self.value <= float(bound)


def targets(runs: Runs, peers: Sequence[str]) -> list[Target]:
    """The issue's targets from one round's runs: ours at defaults against the better peer, and c1 against in-process."""
    best = max(peers, key=lambda p: runs[(p, "peer-multipart", 16)]["throughput"])
    theirs = runs[(best, "peer-multipart", 16)]
    out = []
    for mode, label in (("http-multipart", "HTTP multipart"), ("grpc-unary", "gRPC unary")):
        ours = runs[(SERVICE, mode, 16)]
        out.append(Target(f"c16 throughput: ours over {label} / the better peer's (HTTP)", ">= 1.5",
                          ours["throughput"] / theirs["throughput"], best))
        out.append(Target(f"c16 p99: ours over {label} / the better peer's (HTTP)", "<= 0.7",
                          ours["p99_ms"] / theirs["p99_ms"], best))
    pipeline = runs[("in-process", "pipeline", 1)]["p50_ms"]
    for mode, label in (("grpc-unary", "gRPC unary"), ("http-multipart", "HTTP multipart")):
        out.append(Target(f"c1 p50: ours over {label} / in-process pipeline", "<= 1.1",
                          runs[(SERVICE, mode, 1)]["p50_ms"] / pipeline))
    return out


def median_targets(per_round: Sequence[Sequence[Target]]) -> list[Target]:
    """Per target, the median of the rounds' ratios; met or not is judged on the median."""
    return [
        Target(first.name, first.goal, statistics.median(r[i].value for r in per_round),
               ",".join(sorted({r[i].against for r in per_round if r[i].against})))
        for i, first in enumerate(per_round[0])
    ]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def render(meta: Mapping, rounds: Sequence[Mapping], per_round: Sequence[Sequence[Target]], peers: Sequence[str]) -> str:
    lines = [
        f"# `classify serve` against BentoML and Ray Serve — {meta['name']}",
        "",
        f"`.venv/bin/python -m bench.peer_compare --rounds {meta['rounds']} --duration {meta['duration_s']}` "
        f"({meta['started']}, {meta['cpus']} CPUs). Same ResNet18 weights ({meta['weights']}), same closed-loop load "
        "generator (`classify bench`), the same 500x375 JPEGs, top-5, concurrency 1 and 16, "
        f"{meta['duration_s']} s a run after {meta['warmup_s']} s warm-up; one server at a time, the order "
        "reversed every other round; ratios are taken within a round.",
        "",
        "**The machine was shared** with other engineers' work during these runs: absolute numbers are noisy; "
        "the ratios within a round are what this report stands on. The load average (1, 5, 15 min; "
        f"{meta['cpus']} CPUs) before and after each server's turn, measurement included:",
        "",
    ]
    for i, r in enumerate(rounds, 1):
        lines += [f"- round {i}: " + "; ".join(f"{t}: {load['before']} -> {load['after']}" for t, load in r["load"].items())]
    lines += ["", "Servers and their settings:", "",
              "- service: `classify serve --model resnet18 --weights W` with every other setting at its default "
              f"(backend {meta['service_backend']}; the in-process pipeline is the same engine without a transport)"]
    lines += [f"- {name}: {PEERS[name].settings}" for name in peers]
    lines += ["", "## Every run", "", "| round | server | mode | concurrency | img/s | p50 ms | p99 ms | errors |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for i, r in enumerate(rounds, 1):
        for run in r["runs"]:
            if run["target"] == "in-process" and run["mode"] != "pipeline":
                continue
            errors = ", ".join(f"{k} {v}" for k, v in run["errors"].items()) or "0"
            lines.append(f"| {i} | {run['target']} | {run['mode']} | {run['concurrency']} | {run['throughput']:.1f} | "
                         f"{_ms(run['p50_ms'])} | {_ms(run['p99_ms'])} | {errors} |")
    medians = median_targets(per_round)
    lines += ["", "## Targets", "", "| target | goal | " + " | ".join(f"round {i}" for i in range(1, len(rounds) + 1))
              + " | median | status |", "|---|---|" + "---:|" * (len(rounds) + 1) + "---|"]
    for i, med in enumerate(medians):
        values = " | ".join(f"{r[i].value:.2f}" + (f" ({r[i].against})" if r[i].against else "") for r in per_round)
        lines.append(f"| {med.name} | {med.goal} | {values} | {med.value:.2f} | {'met' if med.met else 'NOT met'} |")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def readme_table(summary: Mapping) -> str:
    """README's table: median over the rounds of each server's figures, then the targets' medians."""
    rounds = summary["rounds"]
    rows: dict[tuple[str, str, int], list[Mapping]] = {}
    for r in rounds:
        for run in r["runs"]:
            if run["target"] != "in-process" or run["mode"] == "pipeline":
                rows.setdefault((run["target"], run["mode"], run["concurrency"]), []).append(run)
    names = {"service": "classify serve", "in-process": "in-process pipeline (no transport)",
             "bentoml": "BentoML", "rayserve": "Ray Serve"}
    modes = {"http-multipart": "HTTP multipart", "grpc-unary": "gRPC unary", "peer-multipart": "HTTP multipart",
             "pipeline": "—"}
    lines = ["| server | API | img/s at c16 | p99 ms at c16 | p50 ms at c1 |", "|---|---|---:|---:|---:|"]
    for (target, mode) in dict.fromkeys((t, m) for t, m, _ in rows):
        c16, c1 = rows.get((target, mode, 16), []), rows.get((target, mode, 1), [])
        median = lambda runs, key: statistics.median(run[key] for run in runs) if runs else float("nan")  # noqa: E731
        lines.append(f"| {names.get(target, target)} | {modes.get(mode, mode)} | {median(c16, 'throughput'):.1f} | "
                     f"{median(c16, 'p99_ms'):.0f} | {median(c1, 'p50_ms'):.0f} |")
    lines += ["", "| target | goal | median of the rounds | status |", "|---|---|---:|---|"]
    for t in summary["median"]:
        lines.append(f"| {t['name']} | {t['goal']} | {t['value']:.2f} | {'met' if t['met'] else 'NOT met'} |")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="2cpu-resnet18-peers")
    parser.add_argument("--readme-table", action="store_true",
                        help="print README's table from bench/results/NAME/summary.json and exit (measures nothing)")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--peers", default="bentoml,rayserve")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each run")
    args = parser.parse_args(argv)
    if args.readme_table:
        print(readme_table(json.loads((REPO / "bench" / "results" / args.name / "summary.json").read_text())))
        return 0
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS]
    if unknown or not peers:
        parser.error(f"--peers: known peers are {', '.join(PEERS)}; got {args.peers!r}")
    pythons = {name: ensure_venv(PEERS[name]) for name in peers}
    out = REPO / "bench" / "results" / args.name
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    from service.settings import Settings

    meta = {"name": args.name, "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
            "service_backend": Settings().backend, "peers": {p: PEERS[p].settings for p in peers}}
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="classify-peers-") as scratch:
        weights = weights_file(args.weights, Path(scratch))
        meta["weights"] = f"{weights.name}"
        for i, order in enumerate(round_orders([SERVICE, *peers], args.rounds), 1):
            runs: list[dict] = []
            load: dict[str, dict[str, str]] = {}
            for target in order:
                before = load_average()
                directory = out / f"round{i}-{target}"
                if target == SERVICE:
                    runs += measure_service(weights, directory, logs, args)
                else:
                    runs += measure_peer(PEERS[target], pythons[target], weights, directory, logs, args)
                load[target] = {"before": before, "after": load_average()}
                time.sleep(1)
            rounds.append({"order": order, "runs": runs, "load": load})
    per_round = [targets(index(r["runs"]), peers) for r in rounds]
    summary = {"meta": meta, "rounds": rounds,
               "targets": [[{**t.__dict__, "met": t.met} for t in r] for r in per_round],
               "median": [{**t.__dict__, "met": t.met} for t in median_targets(per_round)]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report = render(meta, rounds, per_round, peers)
    (out / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
