"""Benchmark `classify serve` against the tutorial baseline on this machine, then stop everything.

    .venv/bin/python bench/run.py --name 2cpu-resnet18                    # concurrency 1 and 16, 10 s a run
    .venv/bin/python bench/run.py --name smoke --modes grpc-unary,tutorial-file \
        --concurrency 1 --duration 2 --max-requests 20 --warmup 0 --no-reference
    .venv/bin/python bench/run.py --name b16 -- --batch-max-size 16       # flags after -- go to `classify serve`

Starts, on 127.0.0.1 and free ports: `classify serve` (ResNet18), the tutorial's FastAPI
app (uvicorn) and its gRPC server (bench/tutorial_baseline/), all three on the same
weights file: --weights, else weights/resnet18-f37072fd.pth when present, else a
deterministic random-init ResNet18 state dict (as the tests use). Then runs
`classify bench` against all of them and writes bench/results/NAME/ (results.json,
report.md, plots, and the servers' logs in logs/). Flags after `--` go to
`classify serve`, and to the bench too where it takes them (batching, threads), so its
in-process references match the server.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "bench" / "tutorial_baseline"
OFFICIAL_WEIGHTS = REPO / "weights" / "resnet18-f37072fd.pth"
START_TIMEOUT_S = 180.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=None, help="results go to bench/results/NAME (default: a UTC timestamp)")
    parser.add_argument("--weights", type=Path, default=None, help="a torchvision ResNet18 state dict for all servers")
    parser.add_argument("--modes", default="all")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--duration", default="10", help="seconds per run at most")
    parser.add_argument("--max-requests", default="2000", help="requests per run at most")
    parser.add_argument("--warmup", default="1", help="untimed seconds before each run")
    parser.add_argument("--no-reference", action="store_true", help="skip the in-process references")
    argv = list(argv)
    serve_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    return args, serve_flags


def weights_file(given: Path | None, scratch: Path) -> Path:
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"run.py: --weights {given} does not exist")
        return given.resolve()
    if OFFICIAL_WEIGHTS.is_file():
        return OFFICIAL_WEIGHTS
    from bench.harness import random_resnet18_weights  # torch: only when generating

    path = random_resnet18_weights(scratch)
    print(f"run.py: {OFFICIAL_WEIGHTS} not present; using random-init ResNet18 weights {path.name}", file=sys.stderr)
    return path


def start(name: str, command: list[str], logs: Path, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    print(f"run.py: starting {name}: {' '.join(command)}", file=sys.stderr)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})


def wait_until(name: str, process: subprocess.Popen[bytes], ready: object, logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"run.py: {name} exited with {process.returncode}; see {logs / (name + '.log')}")
        try:
            if ready():  # type: ignore[operator]
                return
        except (grpc.RpcError, grpc.FutureTimeoutError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"run.py: {name} not ready after {START_TIMEOUT_S:.0f} s; see {logs / (name + '.log')}")


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            print(f"run.py: {name} did not stop on SIGTERM; killing it", file=sys.stderr)
            process.kill()
            process.wait()


def bench_flags(serve_flags: list[str]) -> list[str]:
    """The serve flags that `classify bench` also takes (batching, threads, backend), in order."""
    from service.cli import build_parser

    _, unknown = build_parser().parse_known_args(["bench", "--out", "x", *serve_flags])
    kept = list(serve_flags)
    for token in unknown:
        kept.remove(token)
    return kept


def main(argv: Sequence[str]) -> int:
    args, serve_flags = parse_args(argv)
    name = args.name or datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = REPO / "bench" / "results" / name
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="classify-bench-") as scratch:
        weights = weights_file(args.weights, Path(scratch))
        grpc_port, http_port, tutorial_grpc_port, tutorial_http_port = (free_port() for _ in range(4))
        model = [] if "--model" in serve_flags else ["--model", "resnet18"]
        tutorial_env = {"TUTORIAL_WEIGHTS": str(weights), "TUTORIAL_HTTP_PORT": str(tutorial_http_port),
                        "TUTORIAL_GRPC_PORT": str(tutorial_grpc_port), "TUTORIAL_GRPC_HOST": "127.0.0.1"}
        try:
            processes["service"] = start("service", [
                python, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
                "--http-port", str(http_port), "--weights", str(weights), *model, "--log-format", "text", *serve_flags,
            ], logs)
            processes["tutorial-http"] = start("tutorial-http", [
                python, "-m", "uvicorn", "app:app", "--app-dir", str(BASELINE / "fastapi_app"),
                "--host", "127.0.0.1", "--port", tutorial_env["TUTORIAL_HTTP_PORT"], "--log-level", "warning",
            ], logs, tutorial_env)
            processes["tutorial-grpc"] = start(
                "tutorial-grpc", [python, str(BASELINE / "grpc_app" / "server.py")], logs, tutorial_env
            )
            wait_ready(processes, logs, grpc_port, tutorial_http_port, tutorial_grpc_port)
            command = [
                python, "-m", "service.cli", "bench",
                "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"http://127.0.0.1:{http_port}",
                "--tutorial-http", f"http://127.0.0.1:{tutorial_http_port}",
                "--tutorial-grpc", f"127.0.0.1:{tutorial_grpc_port}",
                "--modes", args.modes, "--concurrency", args.concurrency, "--duration", args.duration,
                "--max-requests", args.max_requests, "--warmup", args.warmup, "--out", str(out),
                "--weights", str(weights), *model, *bench_flags(serve_flags),
                *(["--no-reference"] if args.no_reference else []),
            ]
            print(f"run.py: {' '.join(command)}", file=sys.stderr)
            status = subprocess.run(command, cwd=REPO).returncode
        finally:
            stop(processes)
    print(f"run.py: results in {out}", file=sys.stderr)
    return status


def wait_ready(
    processes: dict[str, subprocess.Popen[bytes]], logs: Path, grpc_port: int, tutorial_http_port: int, tutorial_grpc_port: int
) -> None:
    """Ours until SERVING; the tutorial's until they answer, then one request each (they load the model lazily)."""
    from classify import classify_pb2 as tutorial_pb
    from classify import classify_pb2_grpc as tutorial_pb_grpc
    from classify_client.client import Client
    from service.tools.bench.images import benchmark_images

    photo = next(iter(benchmark_images().values()))
    with Client(f"127.0.0.1:{grpc_port}") as client:
        wait_until("service", processes["service"], client.ready, logs)
    url = f"http://127.0.0.1:{tutorial_http_port}"
    wait_until("tutorial-http", processes["tutorial-http"], lambda: httpx.get(f"{url}/openapi.json", timeout=5).status_code == 200, logs)
    httpx.post(f"{url}/predict/file", files={"file": ("p.jpg", photo)}, timeout=120).raise_for_status()
    with grpc.insecure_channel(f"127.0.0.1:{tutorial_grpc_port}") as channel:
        wait_until("tutorial-grpc", processes["tutorial-grpc"], lambda: grpc.channel_ready_future(channel).result(timeout=2) is None, logs)
        tutorial_pb_grpc.ClassifierStub(channel).Predict(tutorial_pb.ImageRequest(image=photo, topk=5), timeout=120)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
