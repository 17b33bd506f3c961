"""What tracing costs: throughput at concurrency 16 with tracing off and on (100 % sampled, exported to a real
collector), in alternating rounds, plus a rendered example trace of a batched request from a real run.

    .venv/bin/python -m bench.tracing_cost --weights W                          # 3 rounds, off vs on
    .venv/bin/python -m bench.tracing_cost --baseline-tree /tmp/main --rounds 3  # also code without tracing
    .venv/bin/python -m bench.tracing_cost --sample-ratio 0.1                    # also 1 request in 10 traced

Each round starts `classify serve` once per configuration (the first one rotating from round to
round, so that no configuration always runs first or last), on the same weights and flags, and
runs `classify bench` (closed loop, concurrency 16, gRPC unary and HTTP multipart) against it:
- `off`: no OTEL_* variable (tracing off: no SDK imported, no tracing work per request);
- `on`: OTEL_EXPORTER_OTLP_ENDPOINT set, the default sampler (every request traced), spans
  exported over OTLP/HTTP to rotel's collector, which receives and discards them;
- `sampled` (with --sample-ratio R): as `on`, with OTEL_TRACES_SAMPLER=parentbased_traceidratio and
  OTEL_TRACES_SAMPLER_ARG=R, the setting docs/tracing.md advises where 100 % costs too much;
- `baseline` (with --baseline-tree): the same server from another source tree (one without
  tracing), so `off` can be compared with code that has no tracing at all.
The collector runs through every round, so the machine carries it alike in each.
Writes bench/results/NAME/ (report.md, ratio.json, each run's `classify bench` output,
the servers' logs, example-trace.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.run import REPO, free_port, start, stop, wait_until, weights_file
from classify_client.client import Client

MODES = ("grpc-unary", "http-multipart")


def _env(tree: Path, otel: dict[str, str]) -> dict[str, str]:
    """The environment of a server from ``tree``: its code first on the path, no OTEL_* but ``otel``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'gen'}", **otel}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    name: str, tree: Path, otel: dict[str, str], weights: Path, cache: Path, out: Path, logs: Path, duration: str
) -> dict[str, dict[str, float]]:
    """Serve from ``tree`` with the ``otel`` variables, run the closed loop, stop; figures by mode.

    Besides throughput and latency, the server's own CPU time per image: a figure that other load on
    a shared machine disturbs much less than throughput (the load generator is another process).
    """
    grpc_port, http_port = free_port(), free_port()
    process = start(name, [
        sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--http-port", str(http_port), "--weights", str(weights), "--model", "resnet18", "--cache-dir", str(cache),
        "--log-format", "json",
    ], logs, env=_env(tree, otel), cwd=tree)
    processes = {name: process}
    figures: dict[str, dict[str, float]] = {}
    try:
        with Client(f"127.0.0.1:{grpc_port}") as client:
            wait_until(name, process, client.ready, logs)
        for mode in MODES:
            cpu = _cpu_seconds(process.pid)
            subprocess.run([
                sys.executable, "-m", "service.cli", "bench", "--grpc", f"127.0.0.1:{grpc_port}",
                "--http", f"http://127.0.0.1:{http_port}", "--modes", mode, "--concurrency", "16",
                "--duration", duration, "--max-requests", "5000", "--warmup", "0", "--no-reference",
                "--out", str(out / mode),
            ], cwd=REPO, check=True, stdout=subprocess.DEVNULL, env=_env(REPO, {}))
            cpu = _cpu_seconds(process.pid) - cpu
            (run,) = [r for r in json.loads((out / mode / "results.json").read_text())["runs"] if r["target"] == "service"]
            figures[mode] = {"throughput": run["throughput"], "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"],
                             "cpu_ms_per_image": 1000 * cpu / max(1, run["images"])}
    finally:
        stop(processes)
    return figures


def example_trace(weights: Path, cache: Path, logs: Path) -> str:
    """16 concurrent uploads through a standalone gateway to a server, both exporting to a collector that relays
    to this process; the trace of one request that shared its batch, rendered."""
    from bench.collector import collector, render
    from bench.harness import start_gateway, start_server

    with collector(logs / "example") as otel:
        assert otel.sink is not None
        server = start_server(weights, logs / "example", "--cache-dir", str(cache), "--batch-max-delay-ms", "20",
                              env=otel.env("grpc"))
        try:
            gateway = start_gateway(server.grpc_address, logs / "example", env=otel.env("http/protobuf"))
            try:
                from service.tools.bench.images import benchmark_images

                images = list(benchmark_images().values())  # the bench's ~500x375 JPEGs

                def upload(i: int) -> int:
                    return httpx.post(f"{gateway.http_url}/v1/classify:upload", files={"file": images[i % len(images)]},
                                      timeout=60).status_code

                with ThreadPoolExecutor(16) as pool:
                    assert set(pool.map(upload, range(32))) == {200}
                spans = otel.sink.wait_for(lambda s: sum(x.name == "classify.batch" for x in s) > 0 and sum(
                    x.service == "classify-gateway" and x.kind == "SERVER" for x in s) >= 32)
            finally:
                gateway.stop()
        finally:
            server.stop()
    batches = sorted((s for s in spans if s.name == "classify.batch"), key=lambda b: -b.attributes["classify.batch.size"])
    image = next(s for s in spans if s.span_id == batches[0].links[len(batches[0].links) // 2][1])
    return render(spans, image.trace_id)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="2cpu-resnet18-tracing")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="10", help="seconds per mode and run")
    parser.add_argument("--baseline-tree", type=Path, default=None, help="a source tree without tracing (e.g. main)")
    parser.add_argument("--sample-ratio", type=float, default=None,
                        help="also run with this fraction of requests traced (parentbased_traceidratio)")
    args = parser.parse_args(argv)
    from bench.collector import collector

    out = REPO / "bench" / "results" / args.name
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    load = [f"before: {_load()}"]
    rounds: list[dict[str, dict[str, dict[str, float]]]] = []
    with tempfile.TemporaryDirectory(prefix="classify-tracing-") as scratch, collector(logs, relay=False) as otel:
        weights = weights_file(args.weights, Path(scratch))
        cache = Path(scratch) / "cache"
        configs: dict[str, tuple[Path, dict[str, str]]] = {
            "off": (REPO, {}),
            "on": (REPO, {"OTEL_EXPORTER_OTLP_ENDPOINT": otel.http_endpoint}),
        }
        if args.sample_ratio is not None:
            configs["sampled"] = (REPO, {"OTEL_EXPORTER_OTLP_ENDPOINT": otel.http_endpoint,
                                         "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                         "OTEL_TRACES_SAMPLER_ARG": str(args.sample_ratio)})
        if args.baseline_tree is not None:
            configs = {"baseline": (args.baseline_tree.resolve(), {}), **configs}
        names = list(configs)
        for i in range(args.rounds):
            # Each round starts with the next configuration: a later place in a round measured slower
            # (1 to 3 % a place, on a quiet machine), which a fixed order would charge to one configuration.
            order = names[i % len(names):] + names[:i % len(names)]
            measured = {
                name: measure(name, *configs[name], weights, cache, out / f"round{i + 1}-{name}", logs, args.duration)
                for name in order
            }
            rounds.append({name: measured[name] for name in names})
            load.append(f"after round {i + 1}: {_load()}")
        example = example_trace(weights, cache, logs)
    (out / "example-trace.txt").write_text(example + "\n")
    pairs = [("on", "off")] + ([("sampled", "off")] if "sampled" in configs else []) + (
        [("off", "baseline")] if "baseline" in configs else [])
    ratios = {f"{a}/{b}": {mode: [r[a][mode]["throughput"] / r[b][mode]["throughput"] for r in rounds] for mode in MODES}
              for a, b in pairs}
    cpu_ratios = {f"{a}/{b}": {mode: [r[a][mode]["cpu_ms_per_image"] / r[b][mode]["cpu_ms_per_image"] for r in rounds]
                               for mode in MODES} for a, b in pairs}
    summary = {"rounds": rounds, "ratios": ratios, "cpu_ratios": cpu_ratios, "load_average": load,
               "median_ratio": {k: {m: statistics.median(v) for m, v in by_mode.items()} for k, by_mode in ratios.items()},
               "median_cpu_ratio": {k: {m: statistics.median(v) for m, v in by_mode.items()}
                                    for k, by_mode in cpu_ratios.items()}}
    (out / "ratio.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# Tracing's cost, end to end (closed loop, concurrency 16, {args.duration} s a mode)\n",
        f"`python -m bench.tracing_cost --rounds {args.rounds}"
        + (f" --sample-ratio {args.sample_ratio}" if "sampled" in configs else "")
        + (" --baseline-tree TREE" if "baseline" in configs else "") + "`; each round runs every configuration, "
        "starting with the next one each round (" + ", ".join(names) + "). `on`: every request traced (the default sampler), spans exported over OTLP/HTTP to a rotel "
        "collector on this machine; `off`: no OTEL_* variable"
        + (f"; `sampled`: as `on`, a fraction {args.sample_ratio} of requests traced (parentbased_traceidratio)"
           if "sampled" in configs else "")
        + ("; `baseline`: the same server from a tree without tracing" if "baseline" in configs else "")
        + ". Throughput is images per second seen by the load generator; CPU is the server process's own "
        "CPU time (all threads) per image served, which other work on a shared machine disturbs far less.\n",
        "| round | mode | " + " | ".join(f"{n} img/s" for n in names) + " | "
        + " | ".join(f"{n} CPU ms/img" for n in names) + " | "
        + " | ".join(f"{a}/{b} img/s" for a, b in pairs) + " | " + " | ".join(f"{a}/{b} CPU" for a, b in pairs) + " |",
        "|---|---|" + "---:|" * (2 * len(names) + 2 * len(pairs)),
    ]
    for i, r in enumerate(rounds, 1):
        for mode in MODES:
            lines.append(
                f"| {i} | {mode} | " + " | ".join(f"{r[n][mode]['throughput']:.1f}" for n in names) + " | "
                + " | ".join(f"{r[n][mode]['cpu_ms_per_image']:.1f}" for n in names) + " | "
                + " | ".join(f"{r[a][mode]['throughput'] / r[b][mode]['throughput']:.3f}" for a, b in pairs) + " | "
                + " | ".join(f"{r[a][mode]['cpu_ms_per_image'] / r[b][mode]['cpu_ms_per_image']:.3f}" for a, b in pairs)
                + " |"
            )
    for mode in MODES:
        lines.append(f"| median | {mode} |" + " |" * (2 * len(names)) + " "
                     + " | ".join(f"{summary['median_ratio'][f'{a}/{b}'][mode]:.3f}" for a, b in pairs) + " | "
                     + " | ".join(f"{summary['median_cpu_ratio'][f'{a}/{b}'][mode]:.3f}" for a, b in pairs) + " |")
    lines += ["", f"Load average (1, 5, 15 min; {os.cpu_count()} CPUs, a machine shared with other work): "
              + "; ".join(load) + ".", "", "An example trace from the same run: [example-trace.txt](example-trace.txt)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
