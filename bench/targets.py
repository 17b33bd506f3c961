"""The performance issue's targets, computed from committed `classify bench` results.

Run: .venv/bin/python -m bench.targets > bench/results/TARGETS.md
Every figure is read from bench/results/*/results.json; none is written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _runs(name: str) -> dict[tuple[str, str, int], dict]:
    document = json.loads((RESULTS / name / "results.json").read_text())
    return {(r["target"], r["mode"], r["concurrency"]): r for r in document["runs"]}


def _row(target: str, goal: str, value: float, met: bool, source: str) -> str:
    return f"| {target} | {goal} | {value:.2f} | {'met' if met else 'NOT met'} | {source} |"


def main() -> None:
    fp32, int8, bf16 = _runs("2cpu-resnet18-fp32"), _runs("2cpu-resnet18-int8"), _runs("2cpu-resnet18-bf16")
    pipe16 = fp32[("in-process", "pipeline", 16)]["throughput"]
    pipe1_p50 = fp32[("in-process", "pipeline", 1)]["p50_ms"]
    rows = [
        _row("gRPC unary / pipeline at c16 (fp32)", ">= 0.90", fp32[("service", "grpc-unary", 16)]["throughput"] / pipe16,
             fp32[("service", "grpc-unary", 16)]["throughput"] / pipe16 >= 0.90, "fp32"),
        _row("gRPC stream / pipeline at c16 (fp32)", ">= 0.90", fp32[("service", "grpc-stream", 16)]["throughput"] / pipe16,
             fp32[("service", "grpc-stream", 16)]["throughput"] / pipe16 >= 0.90, "fp32"),
        _row("HTTP multipart / pipeline at c16 (fp32)", ">= 0.85", fp32[("service", "http-multipart", 16)]["throughput"] / pipe16,
             fp32[("service", "http-multipart", 16)]["throughput"] / pipe16 >= 0.85, "fp32"),
        _row("HTTP JSON / pipeline at c16 (fp32)", ">= 0.80", fp32[("service", "http-json", 16)]["throughput"] / pipe16,
             fp32[("service", "http-json", 16)]["throughput"] / pipe16 >= 0.80, "fp32"),
        _row("gRPC p50 / pipeline p50 at c1 (fp32)", "<= 1.15", fp32[("service", "grpc-unary", 1)]["p50_ms"] / pipe1_p50,
             fp32[("service", "grpc-unary", 1)]["p50_ms"] / pipe1_p50 <= 1.15, "fp32"),
    ]
    int8_vs_fp32 = int8[("service", "grpc-unary", 16)]["throughput"] / fp32[("service", "grpc-unary", 16)]["throughput"]
    rows.append(_row("int8 / torch fp32 end to end (gRPC c16)", ">= 3", int8_vs_fp32, int8_vs_fp32 >= 3, "int8 vs fp32 runs"))
    for name, runs, x_goal, p_goal in (("fp32", fp32, 1.4, 0.75), ("int8", int8, 4.0, 0.3), ("bf16", bf16, None, None)):
        for mode in ("tutorial-file", "tutorial-grpc"):
            ours, theirs = runs[("service", mode, 16)], runs[("tutorial", mode, 16)]
            x = ours["throughput"] / theirs["throughput"]
            p = ours["p99_ms"] / theirs["p99_ms"]
            rows.append(_row(f"{mode} throughput vs tutorial at c16 ({name})", f">= {x_goal}" if x_goal else "(no target)",
                             x, x_goal is None or x >= x_goal, name))
            rows.append(_row(f"{mode} p99 vs tutorial at c16 ({name})", f"<= {p_goal}" if p_goal else "(no target)",
                             p, p_goal is None or p <= p_goal, name))
    print("| target | goal | measured | status | run |\n|---|---|---:|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
