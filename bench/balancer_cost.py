"""What Envoy in front costs: one replica called directly and through Envoy, in alternating rounds.

    .venv/bin/python -m bench.balancer_cost --name 2cpu-resnet18-envoy            # 3 rounds, 10 s a run
    .venv/bin/python -m bench.balancer_cost --name smoke --rounds 1 --duration 2  # a quick look

Starts one `classify serve` (ResNet18 on the default backend: --weights, else the official
file when present, else random-init weights) and Envoy from .venv-envoy (`make envoy`)
configured from deploy/envoy/envoy.yaml with that one replica as its only endpoint (the
same health checks, retries and outlier detection as `classify cluster`). Each round runs
`classify bench` (gRPC unary and HTTP JSON, concurrency 1 and 16) against the replica
directly and through Envoy, in an order that alternates between rounds, so drift on a
shared machine hits both alike. Reported: Envoy's added latency at concurrency 1 (p50 and
p99 differences) and its throughput ratio at concurrency 16, per round and the median, and
the CPU time Envoy itself spent per call (from /proc, over each round's Envoy runs, less its
idle rate measured for 10 s before the rounds): on a
busy shared machine the latency and throughput figures carry the other work's noise, the
CPU time per call much less.
Writes bench/results/NAME/ (balancer.json, report.md, every `classify bench` output).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.run import REPO, free_port, start, stop, wait_until, weights_file
from classify_client.client import Client
from service.tools.cluster.envoy_config import Endpoint, load_template, render

ENVOY = REPO / ".venv-envoy" / "bin" / "envoy"
MODES = ("grpc-unary", "http-json")
TARGETS = ("direct", "envoy")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _bench(grpc: str, http: str, out: Path, duration: str) -> list[dict[str, Any]]:
    subprocess.run([
        sys.executable, "-m", "service.cli", "bench", "--grpc", grpc, "--http", http, "--modes", ",".join(MODES),
        "--concurrency", "1,16", "--duration", duration, "--max-requests", "5000", "--warmup", "1",
        "--no-reference", "--out", str(out),
    ], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    runs: list[dict[str, Any]] = json.loads((out / "results.json").read_text())["runs"]
    return [r for r in runs if r["target"] == "service"]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _calls(admin: str) -> int:
    """Calls Envoy's two listeners have taken so far."""
    stats = httpx.get(f"{admin}/stats", params={"filter": r"^http\.(grpc|http)\.downstream_rq_total$"}, timeout=5).text
    return sum(int(line.rsplit(":", 1)[1]) for line in stats.splitlines() if ":" in line)


def _envoy_ready(admin: str) -> bool:
    clusters = httpx.get(f"{admin}/clusters", params={"format": "json"}, timeout=2).json()
    hosts = [h for c in clusters.get("cluster_statuses", []) for h in c.get("host_statuses", [])]
    healthy = [h for h in hosts if set(h.get("health_status", {})) <= {"eds_health_status"}]
    return httpx.get(f"{admin}/ready", timeout=2).status_code == 200 and len(hosts) == 2 == len(healthy)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="2cpu-resnet18-envoy")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="10", help="seconds per mode, concurrency and target")
    parser.add_argument("--envoy-concurrency", type=int, default=1, help="Envoy worker threads (as classify cluster)")
    args = parser.parse_args(argv)
    if not ENVOY.exists():
        raise SystemExit(f"balancer_cost: {ENVOY} is missing: run `make envoy`")
    out = REPO / "bench" / "results" / args.name
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    load: list[str] = [f"before: {_load()}"]
    rounds: list[dict[str, Any]] = []
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="classify-balancer-") as scratch:
        weights = weights_file(args.weights, Path(scratch))
        grpc_port, http_port = free_port(), free_port()
        envoy_grpc, envoy_http, admin_port = free_port(), free_port(), free_port()
        try:
            processes["service"] = start("service", [
                sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
                "--http-port", str(http_port), "--weights", str(weights), "--model", "resnet18", "--log-format", "text",
            ], logs)
            with Client(f"127.0.0.1:{grpc_port}") as client:
                wait_until("service", processes["service"], client.ready, logs)
            config = render(load_template(), [Endpoint("127.0.0.1", grpc_port, http_port)], listen_host="127.0.0.1",
                            grpc_port=envoy_grpc, http_port=envoy_http, admin_port=admin_port,
                            access_log=Path(os.devnull))
            (Path(scratch) / "envoy.json").write_text(json.dumps(config))
            processes["envoy"] = start("envoy", [
                str(ENVOY), "-c", str(Path(scratch) / "envoy.json"), "--use-dynamic-base-id",
                "--concurrency", str(args.envoy_concurrency), "--log-level", "warning",
            ], logs)
            admin = f"http://127.0.0.1:{admin_port}"
            wait_until("envoy", processes["envoy"], lambda: _envoy_ready(admin), logs)
            addresses = {
                "direct": (f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"),
                "envoy": (f"127.0.0.1:{envoy_grpc}", f"http://127.0.0.1:{envoy_http}"),
            }
            # Envoy's CPU while idle (health checks, timers), to subtract from each loaded run.
            idle_started, idle_cpu = time.monotonic(), _cpu_seconds(processes["envoy"].pid)
            time.sleep(10)
            idle_rate = (_cpu_seconds(processes["envoy"].pid) - idle_cpu) / (time.monotonic() - idle_started)
            for i in range(args.rounds):
                order = TARGETS if i % 2 == 0 else TARGETS[::-1]
                measured: dict[str, Any] = {}
                for target in order:
                    grpc_address, http_url = addresses[target]
                    started, cpu, calls = time.monotonic(), _cpu_seconds(processes["envoy"].pid), _calls(admin)
                    measured[target] = _bench(grpc_address, http_url, out / f"round{i + 1}-{target}", args.duration)
                    if target == "envoy":
                        busy = _cpu_seconds(processes["envoy"].pid) - cpu - idle_rate * (time.monotonic() - started)
                        measured["envoy_cpu_us_per_call"] = 1e6 * busy / max(1, _calls(admin) - calls)
                rounds.append(measured)
                load.append(f"after round {i + 1}: {_load()}")
                print(f"balancer_cost: round {i + 1} of {args.rounds} done ({time.strftime('%H:%M:%S')})", file=sys.stderr)
        finally:
            stop(processes)
    summary = _summarize(rounds)
    summary.update({"rounds": rounds, "load_average": load, "cpus": os.cpu_count(), "envoy_idle_cpu_share": idle_rate,
                    "envoy_concurrency": args.envoy_concurrency, "duration_s": float(args.duration)})
    (out / "balancer.json").write_text(json.dumps(summary, indent=2) + "\n")
    report = _report(summary, args)
    (out / "report.md").write_text(report)
    print(report)
    return 0


def _run(runs: list[dict[str, Any]], mode: str, concurrency: int) -> dict[str, Any]:
    (found,) = [r for r in runs if r["mode"] == mode and r["concurrency"] == concurrency]
    return found


def _summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per_mode: dict[str, dict[str, list[float]]] = {}
    for mode in MODES:
        rows: dict[str, list[float]] = {"added_p50_ms": [], "added_p99_ms": [], "throughput_ratio_c16": [],
                                        "errors": []}
        for measured in rounds:
            direct1, envoy1 = _run(measured["direct"], mode, 1), _run(measured["envoy"], mode, 1)
            direct16, envoy16 = _run(measured["direct"], mode, 16), _run(measured["envoy"], mode, 16)
            rows["added_p50_ms"].append(envoy1["p50_ms"] - direct1["p50_ms"])
            rows["added_p99_ms"].append(envoy1["p99_ms"] - direct1["p99_ms"])
            rows["throughput_ratio_c16"].append(envoy16["throughput"] / direct16["throughput"])
            rows["errors"].append(float(sum(sum(r["errors"].values()) for r in (envoy1, envoy16))))
        per_mode[mode] = rows
    return {"per_mode": per_mode,
            "median": {mode: {key: statistics.median(values) for key, values in rows.items()}
                       for mode, rows in per_mode.items()},
            "envoy_cpu_us_per_call": [r["envoy_cpu_us_per_call"] for r in rounds],
            "median_envoy_cpu_us_per_call": statistics.median(r["envoy_cpu_us_per_call"] for r in rounds)}


def _report(summary: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Envoy in front of one replica vs direct calls (alternating rounds)\n",
        f"`python -m bench.balancer_cost --name {args.name} --rounds {args.rounds} --duration {args.duration}`; "
        f"{summary['cpus']} CPUs shared by the replica, Envoy ({summary['envoy_concurrency']} worker) and the load "
        "generator; ResNet18 fp32 on ONNX Runtime, 500x375 JPEGs. Envoy runs deploy/envoy/envoy.yaml with the "
        "replica as its one static endpoint.\n",
        "| round | mode | c1 p50 direct ms | c1 p50 Envoy ms | added p50 ms | added p99 ms "
        "| c16 direct img/s | c16 Envoy img/s | c16 ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, measured in enumerate(summary["rounds"], 1):
        for mode in MODES:
            d1, e1 = _run(measured["direct"], mode, 1), _run(measured["envoy"], mode, 1)
            d16, e16 = _run(measured["direct"], mode, 16), _run(measured["envoy"], mode, 16)
            lines.append(
                f"| {i} | {mode} | {d1['p50_ms']:.1f} | {e1['p50_ms']:.1f} | {e1['p50_ms'] - d1['p50_ms']:+.2f} | "
                f"{e1['p99_ms'] - d1['p99_ms']:+.1f} | {d16['throughput']:.1f} | {e16['throughput']:.1f} | "
                f"{e16['throughput'] / d16['throughput']:.3f} |"
            )
    for mode in MODES:
        median = summary["median"][mode]
        lines.append(f"| median | {mode} | | | {median['added_p50_ms']:+.2f} | {median['added_p99_ms']:+.1f} | | | "
                     f"{median['throughput_ratio_c16']:.3f} |")
    errors = {mode: int(sum(summary["per_mode"][mode]["errors"])) for mode in MODES}
    per_round = ", ".join(f"{v:.0f}" for v in summary["envoy_cpu_us_per_call"])
    lines += ["", f"Envoy's own CPU time per call (both transports, above its idle rate of "
              f"{1000 * summary['envoy_idle_cpu_share']:.1f} ms a second spent on health checks and timers): median "
              f"{summary['median_envoy_cpu_us_per_call']:.0f} µs (rounds: {per_round} µs).",
              f"Failed calls through Envoy: {errors}.",
              f"Load average (1, 5, 15 min): {'; '.join(summary['load_average'])}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
