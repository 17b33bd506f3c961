"""Triton's perf_analyzer (C++) against `classify serve` over OIP gRPC and HTTP, beside our Python load generator.

    .venv/bin/python -m bench.perf_analyzer --name 2cpu-resnet18-perf-analyzer [--weights W]
        [--concurrency 1,4,16] [--interval-ms 5000] [--rounds 2] [-- SERVE FLAGS...]
    .venv/bin/python -m bench.perf_analyzer --write-input-data input.json [IMAGE ...]
        (only writes perf_analyzer's --input-data file: the images given, else the bench's JPEGs)

One `classify serve` (the same weights rule as bench/run.py: --weights, else the
official file, else random-init ResNet18), the same ~500 px JPEGs as `classify
bench`. Each round runs, at every concurrency: perf_analyzer over gRPC and over
HTTP (OIP, inference.GRPCInferenceService / /v2), then `classify bench` over
classify.v1 gRPC unary and HTTP multipart; rounds alternate the order. Writes
bench/results/NAME/ (results.json, report.md). perf_analyzer comes from
`make oip-tools` (.venv-oip); it needs no GPU.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.run import REPO, free_port, start, stop, wait_until, weights_file

OIP_VENV = REPO / ".venv-oip"
PERF_ANALYZER = OIP_VENV / "perf_analyzer" / "bin" / "perf_analyzer"
CUDA_RUNTIME = OIP_VENV / "perf_analyzer" / "nvidia" / "cuda_runtime" / "lib"
MODEL = "resnet18"
# CSV columns perf_analyzer writes (microseconds for the times).
COLUMNS = {
    "throughput": "Inferences/Second", "p50_us": "p50 latency", "p99_us": "p99 latency",
    "server_queue_us": "Server Queue", "server_compute_input_us": "Server Compute Input",
    "server_compute_infer_us": "Server Compute Infer", "server_compute_output_us": "Server Compute Output",
}


def input_data(images: Sequence[bytes]) -> dict[str, Any]:
    """perf_analyzer's --input-data: one step per image; a BYTES element carries its own 4-byte length."""
    return {"data": [{"IMAGE": {"b64": base64.b64encode(struct.pack("<I", len(i)) + i).decode()}} for i in images]}


def write_input_data(out: Path, files: Sequence[Path]) -> int:
    """Write ``input_data`` of ``files`` (default: the bench's JPEGs) to ``out``; 0, or 2 naming an unreadable file."""
    try:
        images = [f.read_bytes() for f in files]
    except OSError as error:
        print(f"bench.perf_analyzer: {error.filename}: cannot be read ({error.strerror})", file=sys.stderr)
        return 2
    if not images:
        from service.tools.bench.images import benchmark_images

        images = list(benchmark_images().values())
    out.write_text(json.dumps(input_data(images)))
    print(f"{out}: {len(images)} images for perf_analyzer --input-data")
    return 0


def perf_analyzer(
    protocol: str, url: str, data_file: Path, concurrency: int, out_csv: Path,
    *, interval_ms: int = 5000, stability: int = 50, trials: int = 8, model: str = MODEL,
    request_count: int | None = None,
) -> tuple[dict[str, float], str]:
    """One perf_analyzer measurement; returns the CSV row's figures and its full output.

    Windows are ``interval_ms`` long, or, given ``request_count``, that many
    requests long (what a smoke test on a busy machine wants).
    """
    window = (
        ["--measurement-interval", str(interval_ms)] if request_count is None
        else ["--measurement-mode", "count_windows", "--measurement-request-count", str(request_count)]
    )
    command = [
        str(PERF_ANALYZER), "-m", model, "-u", url, "-i", protocol, "--input-data", str(data_file),
        "--concurrency-range", str(concurrency), "-b", "1", *window,
        "-s", str(stability), "-r", str(trials), "-f", str(out_csv),
    ]
    env = {**os.environ, "LD_LIBRARY_PATH": str(CUDA_RUNTIME)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120 + trials * interval_ms / 250)
    output = result.stdout + result.stderr
    if result.returncode != 0 or not out_csv.exists():
        raise RuntimeError(f"perf_analyzer failed ({result.returncode}):\n{output}")
    with out_csv.open() as handle:
        row = next(csv.DictReader(handle))
    figures = {key: float(row[column]) for key, column in COLUMNS.items()}
    match = re.search(r"Server:\s*\n\s*Inference count: (\d+)", output)
    figures["server_inference_count"] = float(match.group(1)) if match else 0.0
    return figures, output


def python_loadgen(grpc_address: str, http_url: str, concurrency: Sequence[int], seconds: int, out: Path) -> dict[str, Any]:
    """`classify bench` (classify.v1) at the same concurrencies; its results.json."""
    command = [
        sys.executable, "-m", "service.cli", "bench", "--grpc", grpc_address, "--http", http_url,
        "--modes", "grpc-unary,http-multipart", "--concurrency", ",".join(map(str, concurrency)),
        "--duration", str(seconds), "--max-requests", "100000", "--warmup", "1", "--no-reference", "--out", str(out),
    ]
    subprocess.run(command, cwd=REPO, check=True)
    return json.loads((out / "results.json").read_text())


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    serve_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", help="results go to bench/results/NAME (required unless --write-input-data)")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--interval-ms", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write-input-data", type=Path, metavar="FILE",
                        help="write perf_analyzer's --input-data JSON for IMAGEs (default: the bench's JPEGs) and exit")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="with --write-input-data: the image files")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.write_input_data is not None:
        return write_input_data(args.write_input_data, [Path(i) for i in args.images])
    if args.name is None or args.images:
        parser.error("--name NAME is required (IMAGE arguments go with --write-input-data)")
    if not PERF_ANALYZER.exists():
        raise SystemExit("perf_analyzer is missing: run `make oip-tools`")
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from service.tools.bench.images import benchmark_images

    concurrency = [int(c) for c in args.concurrency.split(",")]
    out = REPO / "bench" / "results" / args.name
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    images = list(benchmark_images().values())
    results: dict[str, Any] = {"concurrency": concurrency, "serve_flags": serve_flags, "rounds": []}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="classify-perf-analyzer-") as scratch:
        data_file = Path(scratch) / "input-data.json"  # 3.5 MB of base64: made again each run, never committed
        data_file.write_text(json.dumps(input_data(images)))
        weights = weights_file(args.weights, Path(scratch))
        grpc_port, http_port = free_port(), free_port()
        try:
            processes["service"] = start("service", [
                sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
                "--http-port", str(http_port), "--weights", str(weights), "--model", MODEL, *serve_flags,
            ], logs)
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                wait_until("service", processes["service"], lambda: health.Check(
                    health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING, logs)
            for round_number in range(args.rounds):
                order = ["perf_analyzer", "python"] if round_number % 2 == 0 else ["python", "perf_analyzer"]
                record: dict[str, Any] = {"order": order, "perf_analyzer": {}, "python": None}
                for generator in order:
                    if generator == "python":
                        seconds = max(3, args.interval_ms * 3 // 1000)
                        record["python"] = python_loadgen(
                            f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", concurrency, seconds,
                            Path(scratch) / f"python-{round_number}",
                        )["runs"]
                        continue
                    for protocol, port in (("grpc", grpc_port), ("http", http_port)):
                        for c in concurrency:
                            csv_file = Path(scratch) / f"pa-{round_number}-{protocol}-{c}.csv"
                            figures, output = perf_analyzer(protocol, f"127.0.0.1:{port}", data_file, c, csv_file,
                                                            interval_ms=args.interval_ms)
                            (logs / f"perf_analyzer-{round_number}-{protocol}-c{c}.txt").write_text(output)
                            record["perf_analyzer"][f"{protocol}-c{c}"] = figures
                            print(f"perf_analyzer round {round_number} {protocol} c{c}: {figures}", file=sys.stderr)
                results["rounds"].append(record)
        finally:
            stop(processes)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results))
    print(report(results))
    return 0


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _python_figures(runs: list[dict[str, Any]], mode: str, c: int) -> dict[str, float] | None:
    for run in runs:
        if run.get("target", "service") == "service" and run.get("mode") == mode and run.get("concurrency") == c:
            return {"throughput": run["throughput"], "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"],
                    "client_cpu_ms": 1000 * (run["client_cpu_per_image_s"] or 0.0)}
    return None


def report(results: dict[str, Any]) -> str:
    """A Markdown table: medians over rounds, perf_analyzer (OIP) beside `classify bench` (classify.v1)."""
    lines = [
        "# perf_analyzer (OIP) and `classify bench` (classify.v1) against one `classify serve`",
        "",
        f"Medians over {len(results['rounds'])} alternating rounds; server flags: `{' '.join(results['serve_flags']) or 'defaults'}`.",
        "Server-side times come from ModelStatistics, per image, as perf_analyzer reports them.",
        "",
        "| transport | concurrency | perf_analyzer img/s | p50 ms | p99 ms | server queue ms | server decode ms | server model ms "
        "| classify bench img/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for protocol, mode in (("grpc", "grpc-unary"), ("http", "http-multipart")):
        for c in results["concurrency"]:
            pa = [r["perf_analyzer"][f"{protocol}-c{c}"] for r in results["rounds"]]
            py = [f for r in results["rounds"] if (f := _python_figures(r["python"], mode, c)) is not None]

            def med(rows: list[dict[str, float]], key: str, scale: float = 1.0) -> str:
                return f"{_median([row[key] for row in rows]) * scale:.1f}" if rows else "n/a"

            lines.append(
                f"| {protocol} | {c} | {med(pa, 'throughput')} | {med(pa, 'p50_us', 1e-3)} | {med(pa, 'p99_us', 1e-3)} "
                f"| {med(pa, 'server_queue_us', 1e-3)} | {med(pa, 'server_compute_input_us', 1e-3)} "
                f"| {med(pa, 'server_compute_infer_us', 1e-3)} | {med(py, 'throughput')} | {med(py, 'p50_ms')} | {med(py, 'p99_ms')} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
