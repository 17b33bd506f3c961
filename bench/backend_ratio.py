"""End-to-end throughput of two backends, measured in alternating rounds so drift hits both alike.

    .venv/bin/python -m bench.backend_ratio --weights W                    # torch vs onnxruntime-int8, 3 rounds
    .venv/bin/python -m bench.backend_ratio --weights W --backends torch,onnxruntime --rounds 5

Separate `bench/run.py` runs drift by about ±10 % on a shared 2-core machine,
which is too much for a cross-backend ratio taken from two of them. Here each
round starts `classify serve` with each backend in turn (same weights, flags
and load: closed loop at concurrency 16 over gRPC unary and HTTP multipart),
and the report gives every round's ratio and their median.
Writes bench/results/NAME/ (ratio.json, report.md, one `classify bench` output per round and backend).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import REPO, free_port, start, stop, wait_until, weights_file
from classify_client.client import Client

MODES = ("grpc-unary", "http-multipart")


def measure(
    backend: str, weights: Path, out: Path, logs: Path, duration: str, serve_flags: tuple[str, ...] = ()
) -> dict[str, float]:
    """Serve with ``backend`` (and ``serve_flags``), run the closed loop, stop; images per second by mode."""
    grpc_port, http_port = free_port(), free_port()
    processes = {backend: start(backend, [
        sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--http-port", str(http_port), "--weights", str(weights), "--model", "resnet18",
        "--backend", backend, "--log-format", "text", *serve_flags,
    ], logs)}
    try:
        with Client(f"127.0.0.1:{grpc_port}") as client:
            wait_until(backend, processes[backend], client.ready, logs)
        subprocess.run([
            sys.executable, "-m", "service.cli", "bench", "--grpc", f"127.0.0.1:{grpc_port}",
            "--http", f"http://127.0.0.1:{http_port}", "--modes", ",".join(MODES), "--concurrency", "16",
            "--duration", duration, "--max-requests", "5000", "--warmup", "2", "--no-reference", "--out", str(out),
        ], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    finally:
        stop(processes)
    runs = json.loads((out / "results.json").read_text())["runs"]
    return {r["mode"]: r["throughput"] for r in runs if r["target"] == "service"}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="2cpu-resnet18-int8-vs-torch")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--backends", default="torch,onnxruntime-int8", help="BASELINE,CANDIDATE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="10", help="seconds per mode and round")
    args = parser.parse_args(argv)
    baseline, candidate = args.backends.split(",")
    out = REPO / "bench" / "results" / args.name
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rounds: list[dict[str, dict[str, float]]] = []
    load: list[str] = [f"before: {_load()}"]  # the machine may be shared: say how busy it was
    with tempfile.TemporaryDirectory(prefix="classify-ratio-") as scratch:
        weights = weights_file(args.weights, Path(scratch))
        for i in range(args.rounds):
            rounds.append({
                backend: measure(backend, weights, out / f"round{i + 1}-{backend}", logs, args.duration)
                for backend in (baseline, candidate)
            })
            load.append(f"after round {i + 1}: {_load()}")
    ratios = {mode: [r[candidate][mode] / r[baseline][mode] for r in rounds] for mode in MODES}
    summary = {
        "baseline": baseline, "candidate": candidate, "rounds": rounds,
        "ratios": ratios, "median_ratio": {mode: statistics.median(v) for mode, v in ratios.items()},
        "load_average": load,
    }
    (out / "ratio.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# {candidate} vs {baseline}, end to end (closed loop, concurrency 16, {args.duration} s a mode)\n",
        f"`python -m bench.backend_ratio --backends {baseline},{candidate} --rounds {args.rounds}`; "
        "the backends alternate within each round.\n",
        f"| round | mode | {baseline} img/s | {candidate} img/s | ratio |", "|---|---|---:|---:|---:|",
    ]
    for i, r in enumerate(rounds, 1):
        for mode in MODES:
            lines.append(f"| {i} | {mode} | {r[baseline][mode]:.1f} | {r[candidate][mode]:.1f} | "
                         f"{r[candidate][mode] / r[baseline][mode]:.2f} |")
    for mode in MODES:
        lines.append(f"| median | {mode} | | | {summary['median_ratio'][mode]:.2f} |")
    lines += ["", f"Load average (1, 5, 15 min; {os.cpu_count()} CPUs, a machine shared with other work): "
              + "; ".join(load) + "."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
