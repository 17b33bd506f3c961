"""Thread layouts on this machine: the in-process pipeline under each (inference threads, decode threads, spinning).

Run: .venv/bin/python -m bench.thread_layouts --weights W [--backends torch,onnxruntime-int8] [--duration 8]

Each layout builds the server's own engine (service.roots.serve.build_engine, so the
same decoding, batching and backend) and drives it with the bench's closed
loop at concurrency 16; one process per layout so thread pools start fresh.
Layouts alternate within each round, and medians are reported, because single
runs drift by 10-25 % here. The defaults of --torch-threads, --decode-workers
and --onnx-spin were chosen from this output (bench/results/thread-layouts.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path

LAYOUTS = [  # (inference threads, decode threads, ONNX Runtime spinning)
    (2, 2, True), (2, 2, False), (2, 1, True), (2, 1, False), (1, 1, False), (1, 2, False),
]


def one(backend: str, weights: Path, threads: int, workers: int, spin: bool, duration: float) -> dict[str, float]:
    from service.settings import Settings
    from service.tools.bench.images import benchmark_images
    from service.tools.bench.loadgen import Limits
    from service.tools.bench.reference import build_engine, pipeline

    settings = Settings(
        model=["resnet18"], weights=weights, backend=backend,  # type: ignore[arg-type]
        torch_threads=threads, decode_workers=workers, onnx_spin=spin,
    )
    engine = build_engine(settings)
    try:
        limits = Limits(concurrency=16, duration_s=duration, max_requests=10_000, warmup_s=1.0)
        result = asyncio.run(pipeline(engine, list(benchmark_images().values()), limits, 5, ""))
    finally:
        engine.close()
    return {"throughput": result.throughput, "p50_ms": result.p50_ms or 0.0, "p99_ms": result.p99_ms or 0.0}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--backends", default="torch,onnxruntime-int8")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3, help="every layout once per round; medians reported")
    parser.add_argument("--served", action="store_true",
                        help="measure `classify serve` end to end (gRPC unary, HTTP multipart) instead of in-process")
    parser.add_argument("--one", nargs=4, metavar=("BACKEND", "THREADS", "WORKERS", "SPIN"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        backend, threads, workers, spin = args.one
        print(json.dumps(one(backend, args.weights, int(threads), int(workers), spin == "1", args.duration)))
        return 0
    layouts: list[tuple[str, int, int, bool]] = []
    for backend, (threads, workers, spin) in itertools.product(args.backends.split(","), LAYOUTS):
        spin = spin and backend.startswith("onnxruntime")  # spinning is ONNX Runtime's setting only
        if (backend, threads, workers, spin) not in layouts:
            layouts.append((backend, threads, workers, spin))
    measured: dict[tuple[str, int, int, bool], list[dict[str, float]]] = {layout: [] for layout in layouts}
    if args.served:  # one inference thread lost clearly in-process; not repeated end to end
        return served([layout for layout in layouts if layout[1] > 1], args.weights, args.rounds, args.duration)
    for _ in range(args.rounds):  # rounds outermost, so machine drift spreads over every layout
        for backend, threads, workers, spin in layouts:
            output = subprocess.run([
                sys.executable, "-m", "bench.thread_layouts", "--weights", str(args.weights), "--duration",
                str(args.duration), "--one", backend, str(threads), str(workers), "1" if spin else "0",
            ], check=True, capture_output=True, text=True).stdout
            measured[(backend, threads, workers, spin)].append(json.loads(output.strip().splitlines()[-1]))
    print("| backend | inference threads | decode threads | ONNX Runtime spinning | img/s (median) | "
          "img/s by round | p99 ms (median) |")
    print("|---|---:|---:|---|---:|---|---:|")
    for (backend, threads, workers, spin), results in measured.items():
        spinning = ("on" if spin else "off") if backend.startswith("onnxruntime") else "-"
        rates = [r["throughput"] for r in results]
        print(f"| {backend} | {threads} | {workers} | {spinning} | {statistics.median(rates):.1f} | "
              f"{', '.join(f'{x:.0f}' for x in rates)} | {statistics.median(r['p99_ms'] for r in results):.0f} |")
    return 0


def served(layouts: list[tuple[str, int, int, bool]], weights: Path, rounds: int, duration: float) -> int:
    """The same layouts through a real `classify serve` and the bench's load generator."""
    import tempfile

    from bench.backend_ratio import MODES, measure

    measured: dict[tuple[str, int, int, bool], list[dict[str, float]]] = {layout: [] for layout in layouts}
    with tempfile.TemporaryDirectory(prefix="classify-layouts-") as scratch:
        for i in range(rounds):
            for n, (backend, threads, workers, spin) in enumerate(layouts):
                flags = ("--torch-threads", str(threads), "--decode-workers", str(workers),
                         "--onnx-spin", "true" if spin else "false")
                out = Path(scratch) / f"{i}-{n}"
                measured[(backend, threads, workers, spin)].append(
                    measure(backend, weights, out, Path(scratch), str(duration), flags)
                )
    print("| backend | inference threads | decode threads | ONNX Runtime spinning | "
          + " | ".join(f"{mode} img/s (median; by round)" for mode in MODES) + " |")
    print("|---|---:|---:|---|" + "---|" * len(MODES))
    for (backend, threads, workers, spin), results in measured.items():
        spinning = ("on" if spin else "off") if backend.startswith("onnxruntime") else "-"
        cells = []
        for mode in MODES:
            rates = [r[mode] for r in results]
            cells.append(f"{statistics.median(rates):.1f}; {', '.join(f'{x:.0f}' for x in rates)}")
        print(f"| {backend} | {threads} | {workers} | {spinning} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
