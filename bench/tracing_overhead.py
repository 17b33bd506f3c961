"""CPU per image of the engine's own path (admission, decode pool, queue, batcher), tracing off vs code without
tracing vs tracing on, in alternating rounds: the per-request cost of tracing, without the model in the way.

    .venv/bin/python -m bench.tracing_overhead --baseline-tree /tmp/main --rounds 5

Each run is a fresh process that drives `Engine.classify` over tiny PNGs at concurrency 16
with a stand-in model (fixed probabilities, no arithmetic), so the engine's overhead is
what is measured; it reports the process's CPU time (all threads, the export thread
included) per image, which other load on a shared machine disturbs far less than wall time.
`baseline` runs the same code from a tree without tracing; `off` is this tree with no
tracer; `on` is this tree with the SDK, every image sampled, spans exported over OTLP/HTTP
to a rotel collector (the engine's spans only: a transport adds its SERVER span per call).
Writes bench/results/NAME/overhead.md and overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.run import REPO

CHILD = r'''
import asyncio, io, json, os, sys, time
import numpy as np
from PIL import Image
from service.core.batching import BatchingConfig
from service.core.engine import Engine
from service.core.images import ImageLimits
from service.core.models import LoadedModel, ModelInfo
from service.core.preprocessing import Preprocessing

class Stub:
    name, device, precision = "stub", "cpu", "fp32"
    def predict_proba(self, batch):
        return np.full((len(batch), 10), 0.1, dtype=np.float32)

info = ModelInfo(name="stub", architecture="stub", weights_sha256="ab" * 32, input_height=8, input_width=8,
                 labels=tuple(str(i) for i in range(10)), backend="stub", device="cpu", precision="fp32")
model = LoadedModel(info, Preprocessing(resize_size=8, crop_size=8, mean=(0.5,) * 3, std=(0.5,) * 3), Stub())
kwargs = {}
tracing = None
if os.environ.get("BENCH_TRACING"):
    from service.core.tracing import CoreTracer
    from service.settings import Settings
    from service.tracing import configure
    tracing = configure(Settings(otel_exporter_otlp_endpoint=os.environ["BENCH_TRACING"]), "bench")
    kwargs["tracer"] = CoreTracer(tracing.provider)
engine = Engine([model], limits=ImageLimits(1 << 20, 1 << 20), batching=BatchingConfig(max_batch_size=8),
                decode_workers=2, max_batch_images=16, max_in_flight=64, **kwargs)
engine.warm_up()
buffer = io.BytesIO()
Image.new("RGB", (16, 12), (90, 120, 30)).save(buffer, "PNG")
png = buffer.getvalue()
images = int(sys.argv[1])

async def run():
    gate = asyncio.Semaphore(16)
    async def one():
        async with gate:
            await engine.classify(png)
    await asyncio.gather(*(one() for _ in range(images)))

asyncio.run(run())  # warm
if tracing is not None:
    tracing.provider.force_flush()
cpu, wall = time.process_time(), time.perf_counter()
asyncio.run(run())
wall = time.perf_counter() - wall
if tracing is not None:
    tracing.provider.force_flush()  # exporting these spans is part of their cost
cpu = time.process_time() - cpu
engine.close()
print(json.dumps({"cpu_us": 1e6 * cpu / images, "wall_us": 1e6 * wall / images}))
'''


def _run(tree: Path, images: int, tracing_endpoint: str | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = f"{tree}{os.pathsep}{tree / 'gen'}"
    if tracing_endpoint:
        env["BENCH_TRACING"] = tracing_endpoint
    out = subprocess.run([sys.executable, "-c", CHILD, str(images)], cwd=tree, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="2cpu-resnet18-tracing")
    parser.add_argument("--baseline-tree", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=3000)
    args = parser.parse_args(argv)
    from bench.collector import collector

    out = REPO / "bench" / "results" / args.name
    out.mkdir(parents=True, exist_ok=True)
    load = [f"before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    rounds = []
    with collector(out / "logs", relay=False) as otel:
        for _ in range(args.rounds):
            rounds.append({
                "baseline": _run(args.baseline_tree.resolve(), args.images, None),
                "off": _run(REPO, args.images, None),
                "on": _run(REPO, args.images, otel.http_endpoint),
            })
    load.append(f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    names = ("baseline", "off", "on")
    median = {n: statistics.median(r[n]["cpu_us"] for r in rounds) for n in names}
    summary = {"rounds": rounds, "median_cpu_us": median, "load_average": load,
               "off_minus_baseline_us": median["off"] - median["baseline"], "on_minus_off_us": median["on"] - median["off"]}
    (out / "overhead.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# Tracing's CPU per image in the engine (stand-in model, concurrency 16)\n",
        f"`python -m bench.tracing_overhead --baseline-tree TREE --rounds {args.rounds} --images {args.images}`: "
        "CPU time of the whole process per image (all threads, export included), configurations alternating "
        "within each round; `baseline` is the same engine from a tree without tracing.\n",
        "| round | baseline µs | off µs | on µs |", "|---|---:|---:|---:|",
        *(f"| {i} | {r['baseline']['cpu_us']:.0f} | {r['off']['cpu_us']:.0f} | {r['on']['cpu_us']:.0f} |"
          for i, r in enumerate(rounds, 1)),
        f"| median | {median['baseline']:.0f} | {median['off']:.0f} | {median['on']:.0f} |", "",
        f"Tracing off vs no tracing code: {median['off'] - median['baseline']:+.0f} µs an image "
        f"({median['off'] / median['baseline']:.3f}x); tracing on vs off: {median['on'] - median['off']:+.0f} µs an image "
        "(the engine's spans: image, preprocess, queue and a share of the batch span, exported).", "",
        f"Load average (1, 5, 15 min; {os.cpu_count()} CPUs, shared machine): " + "; ".join(load) + ".",
    ]
    (out / "overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
