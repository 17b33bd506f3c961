"""Why models load on a thread that exits: one inference thread's speed with and without a second OpenMP team.

Run: .venv/bin/python -m bench.openmp_teams --weights W [--backend torch] [--batch 1] [--calls 100] [--rounds 3]

Each layout runs in a fresh process (libgomp's teams live as long as their
threads) and times ``predict_proba`` on a dedicated inference thread, as the
batcher does, after loading the model:
- "loader alive": loaded on a thread that stays alive afterwards (an executor
  thread, as `classify serve` did before service/core/threads.py);
- "loader exited": loaded with ``call_on_exiting_thread`` (what it does now);
- "2nd model, own thread": as "loader exited", plus a second model (the bundled
  EfficientNet-Lite0) that ran once on its own long-lived thread, as one
  batcher thread per model would do;
- "2nd model, same thread": the second model ran on the inference thread
  itself (what the engine does when it serves several models).
Layouts alternate within each round; the report gives per-round medians and
the voluntary context switches per call, which show libgomp's throttled
(sleeping) waits. Output: bench/results/openmp-teams.txt.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LAYOUTS = ("loader alive", "loader exited", "2nd model, own thread", "2nd model, same thread")


def measure(layout: str, weights: Path, backend: str, batch: int, calls: int) -> dict[str, float]:
    """In this process: load by ``layout``, then time ``calls`` inferences on a new long-lived thread."""
    import numpy as np

    from service.core.threads import call_on_exiting_thread
    from service.roots.serve import load_models
    from service.settings import Settings

    settings = Settings.model_validate({"weights": weights, "model": ["resnet18"], "backend": backend})
    if layout == "loader alive":
        keeper = ThreadPoolExecutor(1)  # its thread, and its OpenMP team, outlive the load
        loaded = keeper.submit(load_models, settings).result()[0]
    else:
        loaded = call_on_exiting_thread(load_models, settings)[0]
    second = None
    small = np.zeros((1, 3, 224, 224), dtype=np.float32)
    if layout.startswith("2nd model"):
        two = settings.model_copy(update={"model": ["resnet18", "efficientnet_lite0"]})
        second = call_on_exiting_thread(load_models, two)[1]
        if layout == "2nd model, own thread":
            keeper = ThreadPoolExecutor(1)  # a second batcher thread: alive, holding its team
            keeper.submit(second.backend.predict_proba, small).result()
    batch_input = np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)
    result: dict[str, float] = {}

    def inference_thread() -> None:
        if layout == "2nd model, same thread" and second is not None:
            second.backend.predict_proba(small)
        for _ in range(5):
            loaded.backend.predict_proba(batch_input)
        before = resource.getrusage(resource.RUSAGE_THREAD)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            loaded.backend.predict_proba(batch_input)
            times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_THREAD)
        result["p50_ms"] = statistics.median(times) * 1000
        result["voluntary_switches_per_call"] = (after.ru_nvcsw - before.ru_nvcsw) / calls

    thread = threading.Thread(target=inference_thread, name="inference")
    thread.start()
    thread.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one layout here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.weights, args.backend, args.batch, args.calls)))
        return
    rows: dict[str, list[dict[str, float]]] = {layout: [] for layout in LAYOUTS}
    for round_number in range(args.rounds):
        for layout in LAYOUTS:
            output = subprocess.run(
                [sys.executable, "-m", "bench.openmp_teams", "--weights", str(args.weights), "--backend", args.backend,
                 "--batch", str(args.batch), "--calls", str(args.calls), "--one", layout],
                check=True, capture_output=True, text=True,
            ).stdout
            rows[layout].append(json.loads(output.strip().splitlines()[-1]))
            print(f"round {round_number + 1} {layout}: {rows[layout][-1]}", file=sys.stderr, flush=True)
    print(f"# .venv/bin/python -m bench.openmp_teams --weights {args.weights.name} --backend {args.backend} "
          f"--batch {args.batch} --calls {args.calls} --rounds {args.rounds}")
    print(f"# inference on a dedicated thread, {args.backend}, batch {args.batch}; medians of {args.rounds} rounds")
    print("| layout | p50 ms per call | voluntary context switches per call | rounds (p50 ms) |")
    print("|---|---:|---:|---|")
    for layout in LAYOUTS:
        p50 = statistics.median(row["p50_ms"] for row in rows[layout])
        switches = statistics.median(row["voluntary_switches_per_call"] for row in rows[layout])
        rounds = ", ".join(f"{row['p50_ms']:.1f}" for row in rows[layout])
        print(f"| {layout} | {p50:.1f} | {switches:.0f} | {rounds} |")
    print()
    for slow, fast in ((LAYOUTS[0], LAYOUTS[1]), (LAYOUTS[2], LAYOUTS[3])):
        ratios = [a["p50_ms"] / b["p50_ms"] for a, b in zip(rows[slow], rows[fast], strict=True)]
        print(f"{slow} / {fast}, per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
