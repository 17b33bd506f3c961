"""The performance issue's targets, computed from committed `classify bench` results.

Run: .venv/bin/python -m bench.targets > bench/results/TARGETS.md
     .venv/bin/python -m bench.targets --readme-table 2cpu-resnet18-fp32   (README's HTTP vs gRPC table)
Every figure is read from bench/results/ (results.json of each run, the int8
agreement and soak outputs); none is written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RUNS = {  # label -> results directory; all with the same weights, load and machine
    "torch fp32": "2cpu-resnet18-fp32",
    "onnxruntime fp32": "2cpu-resnet18-onnx-fp32",
    "onnxruntime int8": "2cpu-resnet18-int8",
    "torch bf16": "2cpu-resnet18-bf16",
}
RATIO_RUN = "2cpu-resnet18-int8-vs-torch"  # bench/backend_ratio.py: the two backends in alternating rounds
DEFAULT_RUN = "2cpu-resnet18-onnx-vs-torch"  # bench/backend_ratio.py: the default backend's choice
PEERS_RUN = "2cpu-resnet18-peers"  # bench/peer_compare.py: against BentoML and Ray Serve
Runs = dict[tuple[str, str, int], dict]


def _runs(name: str) -> Runs:
    document = json.loads((RESULTS / name / "results.json").read_text())
    return {(r["target"], r["mode"], r["concurrency"]): r for r in document["runs"]}


def _row(target: str, goal: str, value: float, met: bool | None, source: str) -> str:
    status = "(no target)" if met is None else "met" if met else "NOT met"
    return f"| {target} | {goal} | {value:.2f} | {status} | {source} |"


def _efficiency_rows(label: str, runs: Runs) -> list[str]:
    pipeline = runs[("in-process", "pipeline", 16)]["throughput"]
    rows = []
    for mode, goal in (("grpc-unary", 0.90), ("grpc-stream", 0.90), ("http-multipart", 0.85), ("http-json", 0.80)):
        ratio = runs[("service", mode, 16)]["throughput"] / pipeline
        rows.append(_row(f"{mode} / in-process pipeline, c16", f">= {goal:.2f}", ratio, ratio >= goal, label))
    p50 = runs[("service", "grpc-unary", 1)]["p50_ms"] / runs[("in-process", "pipeline", 1)]["p50_ms"]
    rows.append(_row("grpc-unary p50 / pipeline p50, c1", "<= 1.15", p50, p50 <= 1.15, label))
    return rows


def _tutorial_rows(label: str, runs: Runs, x_goal: float | None, p_goal: float | None) -> list[str]:
    rows = []
    for mode in ("tutorial-file", "tutorial-grpc"):
        ours, theirs = runs[("service", mode, 16)], runs[("tutorial", mode, 16)]
        x, p = ours["throughput"] / theirs["throughput"], ours["p99_ms"] / theirs["p99_ms"]
        rows.append(_row(f"{mode} throughput / tutorial's, c16", f">= {x_goal}" if x_goal else "-", x,
                         None if x_goal is None else x >= x_goal, label))
        rows.append(_row(f"{mode} p99 / tutorial's, c16", f"<= {p_goal}" if p_goal else "-", p,
                         None if p_goal is None else p <= p_goal, label))
    return rows


def _agreement() -> tuple[float, str]:
    text = (RESULTS / "int8-agreement-efficientnet_lite0.txt").read_text()
    match = re.search(r"top-1 agreement int8 vs fp32: ([\d.]+) %", text)
    assert match, "int8-agreement-efficientnet_lite0.txt lacks its agreement line"
    return float(match.group(1)), text


def _soak() -> tuple[float, str]:
    text = (RESULTS / "soak-600s.txt").read_text()
    match = re.search(r"RSS \d+ -> \d+ MiB \(([-+\d.]+) %\)", text)
    assert match, "soak-600s.txt lacks its RSS line"
    return float(match.group(1)), text


def readme_table(name: str) -> str:
    """The tutorial's HTTP-vs-gRPC comparison, answered from one run."""
    runs = _runs(name)
    modes = ("http-json", "http-multipart", "grpc-unary", "grpc-stream")
    lines = [
        "| | HTTP JSON (base64) | HTTP multipart | gRPC unary | gRPC stream |",
        "|---|---:|---:|---:|---:|",
    ]
    for title, concurrency, key, fmt in (
        ("throughput at concurrency 1, img/s", 1, "throughput", "{:.1f}"),
        ("p50 latency at concurrency 1, ms", 1, "p50_ms", "{:.1f}"),
        ("throughput at concurrency 16, img/s", 16, "throughput", "{:.1f}"),
        ("p99 latency at concurrency 16, ms", 16, "p99_ms", "{:.0f}"),
        ("request bytes per image", 16, "bytes_per_image", "{:,.0f}"),
        ("client CPU per image at concurrency 16, ms", 16, "client_cpu_per_image_s", None),
    ):
        cells = []
        for mode in modes:
            run = runs[("service", mode, concurrency)]
            cells.append(f"{1000 * run[key]:.1f}" if fmt is None else fmt.format(run[key]))
        lines.append(f"| {title} | {' | '.join(cells)} |")
    return "\n".join(lines)


def peer_section() -> str:
    """The default backend's measured lead, and the targets against BentoML and Ray Serve."""
    choice = json.loads((RESULTS / DEFAULT_RUN / "ratio.json").read_text())
    rows = []
    for mode, median in choice["median_ratio"].items():
        rounds = ", ".join(f"{x:.2f}" for x in choice["ratios"][mode])
        rows.append(_row(f"onnxruntime fp32 / torch fp32 end to end, {mode} c16 (median of rounds {rounds})",
                         "> 1 (default)", median, median > 1, DEFAULT_RUN))
    peers = json.loads((RESULTS / PEERS_RUN / "summary.json").read_text())
    for round_targets in zip(*peers["targets"], strict=True):
        values = [t["value"] for t in round_targets]
        median = next(t for t in peers["median"] if t["name"] == round_targets[0]["name"])
        against = f" against {median['against']}" if median["against"] else ""
        rows.append(_row(f"{median['name']}{against} (median of rounds {', '.join(f'{v:.2f}' for v in values)})",
                         median["goal"], median["value"], median["met"], PEERS_RUN))
    return f"""## The default backend, and against BentoML and Ray Serve

`python -m bench.backend_ratio --backends torch,onnxruntime --name {DEFAULT_RUN}` (the two backends
served in alternating rounds) and `python -m bench.peer_compare` (`classify serve` at its defaults,
BentoML and Ray Serve, each in turn, in alternating rounds; see bench/results/{PEERS_RUN}/report.md for
every run, every setting and the machine's load). Ratios are taken within a round; status is judged on
the median of the rounds.

| target | goal | measured | status | run |
|---|---|---:|---|---|
{chr(10).join(rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme-table", metavar="RUN", help="print README's HTTP vs gRPC table from bench/results/RUN")
    parser.add_argument("--peers", action="store_true", help="print only the default-backend and peer targets")
    args = parser.parse_args()
    if args.readme_table:
        print(readme_table(args.readme_table))
        return
    if args.peers:
        print(peer_section())
        return
    runs = {label: _runs(name) for label, name in RUNS.items()}
    torch32, onnx32, int8, bf16 = (runs[label] for label in RUNS)
    t = {label: r[("service", "grpc-unary", 16)]["throughput"] for label, r in runs.items()}
    tutorial = torch32[("tutorial", "tutorial-grpc", 16)]
    int8_x = t["onnxruntime int8"] / t["torch fp32"]
    agreement, agreement_text = _agreement()
    rss_change, soak_text = _soak()

    rows = [*_efficiency_rows("torch fp32", torch32), *_efficiency_rows("onnxruntime fp32", onnx32),
            *_efficiency_rows("onnxruntime int8", int8)]
    ratio = json.loads((RESULTS / RATIO_RUN / "ratio.json").read_text())
    for mode, median in ratio["median_ratio"].items():
        rounds = ", ".join(f"{x:.2f}" for x in ratio["ratios"][mode])
        rows.append(_row(f"int8 / torch fp32 end to end, {mode} c16 (median of rounds {rounds})", ">= 3",
                         median, median >= 3, RATIO_RUN))
    rows.append(_row("int8 / torch fp32, grpc-unary c16, from the two separate runs above", "(drift: see below)",
                     int8_x, None, "int8 and torch fp32"))
    rows.append(_row("int8 top-1 agreement with fp32 (EfficientNet-Lite0, 217 images), %", ">= 99", agreement,
                     agreement >= 99, "int8-agreement"))
    rows += _tutorial_rows("onnxruntime fp32", onnx32, 1.4, 0.75)
    rows += _tutorial_rows("torch fp32", torch32, 1.4, 0.75)
    rows += _tutorial_rows("onnxruntime int8", int8, 4.0, 0.3)
    rows += _tutorial_rows("torch bf16", bf16, None, None)
    rows.append(_row("RSS change over a 600 s soak, %", "within ±10", rss_change, abs(rss_change) <= 10, "soak-600s"))

    model = {label: r[("in-process", "model-b8", 1)]["throughput"] for label, r in runs.items()}
    pipeline = {label: r[("in-process", "pipeline", 16)]["throughput"] for label, r in runs.items()}
    int8_client = {mode: 1000 * int8[("service", mode, 16)]["client_cpu_per_image_s"]
                   for mode in ("grpc-unary", "http-multipart", "http-json")}
    int8_c1_client = 1000 * int8[("service", "grpc-unary", 1)]["client_cpu_per_image_s"]
    tutorial_range = "; ".join(
        f"{mode} {min(values):.1f}-{max(values):.1f} img/s at concurrency 16 over the {len(values)} runs"
        for mode in ("tutorial-file", "tutorial-grpc")
        for values in [[r[("tutorial", mode, 16)]["throughput"] for r in runs.values()]]
    )
    decode_ms = 1000 * (int8[("in-process", "pipeline", 16)]["client_cpu_per_image_s"]
                        - int8[("in-process", "model-b8", 1)]["client_cpu_per_image_s"])
    print(f"""# Performance targets (issue: throughput at the hardware limit)

Generated by `.venv/bin/python -m bench.targets > bench/results/TARGETS.md` from the committed
runs in bench/results/ ({", ".join(f"`{name}`" for name in RUNS.values())}), each made by
`bench/run.py --name NAME --weights W [-- --backend B]` on this 2-core machine: ResNet18 compute
with deterministic random-init weights, 500x375 JPEGs, closed loop, 10 s a run, the tutorial's
baseline server in the same run. Runs drift by about ±10 % between repetitions, so ratios are
taken within one run. int8 vs torch fp32 spans backends, so `python -m bench.backend_ratio`
measures it with the two servers in alternating rounds (`{RATIO_RUN}`). The servers ran with
the default settings (each run's are in its results.json), which come from the thread-layout
study (bench/results/thread-layouts.txt) and the OpenMP team study (bench/results/openmp-teams.txt).

| target | goal | measured | status | run |
|---|---|---:|---|---|
{chr(10).join(rows)}

## Reading the table

- **Model ceilings (in-process, batch 8, img/s):** {", ".join(f"{k} {v:.0f}" for k, v in model.items())}.
  The whole in-process pipeline (decode, preprocess, batching, inference) at concurrency 16:
  {", ".join(f"{k} {v:.0f}" for k, v in pipeline.items())}. The tutorial's server did
  {tutorial["throughput"]:.0f} img/s over gRPC in the torch fp32 run.
- **fp32 against the tutorial.** torch eager fp32 is bound by this CPU's FLOP rate: its model alone
  does {model["torch fp32"]:.0f} img/s at batch 8, {model["torch fp32"] / tutorial["throughput"]:.2f}x the
  {tutorial["throughput"]:.0f} img/s the tutorial served over gRPC in the same run, before any decoding
  or transport, so 1.4x leaves the serving layer almost nothing. ONNX Runtime fp32 (same fp32
  arithmetic, better kernels) has more headroom, and is the default backend (see the last section).
- **Serving efficiency** compares each transport with the in-process pipeline of the same backend
  at the same concurrency. The gap is the servers' own CPU (protobuf, HTTP parsing, the event loop)
  and the load generator's, on the same two cores as the model and the decoding. It shows with int8,
  where the model is cheap: the load generator spent {int8_client["http-multipart"]:.1f} ms (HTTP
  multipart) and {int8_client["http-json"]:.1f} ms (HTTP JSON) of CPU per image at concurrency 16, against
  {int8_client["grpc-unary"]:.1f} ms for gRPC unary, while the whole in-process pipeline needs
  {1000 * int8[("in-process", "pipeline", 16)]["client_cpu_per_image_s"]:.1f} ms of CPU per image.
- **Latency at concurrency 1 with int8:** 15 % of the in-process pipeline's p50 is
  {0.15 * int8[("in-process", "pipeline", 1)]["p50_ms"]:.1f} ms, and the load generator alone spends
  {int8_c1_client:.1f} ms of CPU per gRPC request (Python grpc.aio), inside the measured latency.
- **The tutorial's own throughput** drifts between runs like ours: {tutorial_range}.
- **int8.** The int8 model alone is {model["onnxruntime int8"] / model["torch fp32"]:.1f}x the torch fp32
  model, but end to end each image still pays JPEG decoding, preprocessing and batching
  ({decode_ms:.1f} ms of CPU per image in the int8 run: in-process pipeline minus model alone) and
  the transport, on the same two cores, so the end-to-end ratio is lower.
- **Latency at concurrency 1.** A lone request does not wait for a batch to fill (the batcher waits
  only while other images are being decoded), and the inference thread holds the process's only
  OpenMP team (models load on a thread that exits): a second live team made libgomp put torch's
  workers to sleep between layers (bench/results/openmp-teams.txt).
- **int8 accuracy** (`python -m bench.int8_agreement`, output below): the disagreements are near-ties
  of the fp32 model itself (its top-1 leading its top-2 by less than 0.05); where fp32 leads by more
  than 0.1, int8 agrees almost always. Reaching 99 % on near-ties needs quantization-aware training,
  which this project does not do.
- **GPU (CUDA fp16):** no device machine was lent to this task; the `cuda-fp16` backend refuses
  to start without a GPU, with a clear message.

## int8 agreement (bench/results/int8-agreement-efficientnet_lite0.txt)

```
{agreement_text.strip()}
```

## Memory over a 10-minute load (bench/results/soak-600s.txt)

One serving process, one model, mixed valid and invalid traffic over both transports for 600 s,
RSS sampled every second after a 10 s warm-up:

```
{soak_text.strip()}
```

{peer_section()}""")


if __name__ == "__main__":
    main()
