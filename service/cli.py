"""The `classify` command: serve, and predict against a running server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from classify_client.cli import add_predict_arguments
from service.core.errors import StartupError
from service.logs import configure_logging
from service.settings import add_settings_arguments, settings_from_args

GATEWAY_SETTINGS = {
    "host", "http_port", "grpc_upstream", "max_request_bytes", "request_timeout_s", "grace_period_s",
    "auth_token_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file", "docs", "log_level", "log_format",
}


def _run_server(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as error:  # pydantic's ValidationError names the bad setting
        print(f"classify serve: invalid configuration:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from service import app  # heavy imports (torch) only for serving

    entry = app.serve if args.command == "serve" else app.serve_gateway
    try:
        return asyncio.run(entry(settings))
    except StartupError as error:
        logging.getLogger("classify").error("cannot start: %s", error)
        return 2


def _bench(args: argparse.Namespace) -> int:
    from service.bench.cli import run  # the load generator and its references load only here

    return run(args)


def _weights_fetch(args: argparse.Namespace) -> int:
    import dataclasses
    import re

    from service.core.weights import OFFICIAL_WEIGHTS
    from service.weights_store import FetchError, fetch

    weights = OFFICIAL_WEIGHTS[args.model]
    if args.sha256 is not None and args.sha256.lower() != weights.sha256:
        sha256 = args.sha256.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            print(f"classify weights fetch: --sha256 {args.sha256!r} is not 64 hex digits", file=sys.stderr)
            return 2
        if args.url is None:
            print("classify weights fetch: --sha256 names another file than the official one: pass its --url",
                  file=sys.stderr)
            return 2
        # Another file of the same architecture: torchvision's naming, which `serve` verifies.
        weights = dataclasses.replace(weights, sha256=sha256, filename=f"{args.model}-{sha256[:8]}.pth")
    try:
        path = fetch(weights, Path(args.dir), url=args.url, timeout=args.timeout)
    except FetchError as error:
        print(f"classify weights fetch: {error}", file=sys.stderr)
        return 1
    print(f"{path}: verified")
    return 0


def _weights_scan(args: argparse.Namespace) -> int:
    from service.weights_store import scan

    entries = scan(Path(args.dir))
    if args.weights_command == "list":
        print(f"{'model':<12} {'size':>12}  {'sha256':<16} {'status':<10} file")
    for entry in entries:
        status = "verified" if entry.verified else "FAILED"
        if args.weights_command == "list":
            print(f"{entry.model:<12} {entry.size:>12,}  {entry.sha256[:16]} {status:<10} {entry.path}")
        elif not entry.verified:
            print(f"{entry.path}: FAILED: {entry.note}", file=sys.stderr)
        else:
            print(f"{entry.path}: verified ({entry.note})")
    if not entries:
        print(f"no weights files in {args.dir}", file=sys.stderr)
    return 0 if all(entry.verified for entry in entries) else 1


def _quantize(args: argparse.Namespace) -> int:
    from service.quantize import quantize_model

    settings = settings_from_args(args)
    configure_logging(settings.log_level, "text")
    try:
        result = quantize_model(
            args.model_option, Path(args.calibration), settings, args.max_images, args.signed_activations
        )
    except StartupError as error:
        print(f"classify quantize: {error}", file=sys.stderr)
        return 2
    print(
        f"{result.int8_graph}: int8 (static QDQ, per-channel), calibrated on {result.calibration_images} images; "
        f"top-1 agreement with fp32 on them {100 * result.top1_agreement:.1f} %"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve gRPC (and HTTP) until SIGTERM")
    add_settings_arguments(serve, exclude={"grpc_upstream"})
    serve.set_defaults(run=_run_server)

    gateway = commands.add_parser("gateway", help="serve only HTTP, forwarding to a remote gRPC server")
    add_settings_arguments(gateway, only=GATEWAY_SETTINGS)
    gateway.set_defaults(run=_run_server)

    quantize = commands.add_parser("quantize", help="build the int8 ONNX graph of a model (backend onnxruntime-int8)")
    quantize.add_argument("model_option", metavar="MODEL", help="resnet18, efficientnet_lite0 or NAME=ARCH:WEIGHTS[:LABELS]")
    quantize.add_argument("--calibration", required=True, help="folder of representative images")
    quantize.add_argument("--max-images", type=int, default=500, help="calibration images used at most")
    quantize.add_argument(
        "--signed-activations", action="store_true",
        help="int8 symmetric activations: more accurate on EfficientNet-Lite0, slower than fp32 (README)",
    )
    add_settings_arguments(quantize, only={"weights", "weights_sha256", "labels", "cache_dir", "torch_threads", "log_level"})
    quantize.set_defaults(run=_quantize)

    weights = commands.add_parser("weights", help="fetch, list and verify weights files")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True)
    fetch = weights_commands.add_parser("fetch", help="download an official weights file, verified")
    fetch.add_argument("model", choices=["resnet18"])
    fetch.add_argument("--url", default=None, help="a mirror of the official file (same bytes)")
    fetch.add_argument(
        "--sha256", default=None,
        help="SHA-256 of another file of this architecture at --url (e.g. fine-tuned); saved as MODEL-<8 hex>.pth",
    )
    fetch.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds")
    listing = weights_commands.add_parser("list", help="show weights files and their status")
    verify = weights_commands.add_parser("verify", help="re-check every file's digest")
    for command in (fetch, listing, verify):
        command.add_argument("--dir", default="weights", help="weights directory (default: weights)")
    weights.set_defaults(run=lambda a: _weights_fetch(a) if a.weights_command == "fetch" else _weights_scan(a))

    # The client library's own command, so both behave alike (classify-client predict ...).
    add_predict_arguments(commands.add_parser("predict", help="classify images with a running server"))

    bench = commands.add_parser("bench", help="measure running servers: img/s, latency, bytes, client CPU")
    bench.add_argument("--grpc", default="127.0.0.1:50051", metavar="HOST:PORT", help="our gRPC address")
    bench.add_argument("--http", default="http://127.0.0.1:8000", metavar="URL", help="our HTTP gateway")
    bench.add_argument("--tutorial-http", default=None, metavar="URL", help="the tutorial baseline's FastAPI app")
    bench.add_argument("--tutorial-grpc", default=None, metavar="HOST:PORT", help="the tutorial baseline's gRPC server")
    bench.add_argument("--peer", action="append", default=None, metavar="NAME=URL",
                       help="another server's HTTP API for the peer-multipart mode (bench/peers/), repeatable")
    bench.add_argument("--only-peers", action="store_true", help="load only the --peer servers, not ours")
    bench.add_argument("--modes", default="all", help="comma-separated: grpc-unary, grpc-stream, grpc-batch, "
                       "http-json, http-multipart, tutorial-file, tutorial-b64, tutorial-grpc, peer-multipart "
                       "(default: all)")
    bench.add_argument("--concurrency", default="1,4,16", help="comma-separated requests in flight (default 1,4,16)")
    bench.add_argument("--duration", type=float, default=10.0, help="seconds per run at most (default 10)")
    bench.add_argument("--max-requests", type=int, default=2000, help="requests per run at most (default 2000)")
    bench.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before each run (default 1)")
    bench.add_argument("--batch-size", type=int, default=8, help="images per ClassifyBatch call (grpc-batch)")
    bench.add_argument("--top-k", type=int, default=5)
    bench.add_argument("--out", required=True, metavar="DIR", help="where results.json, report.md and plots go")
    bench.add_argument("--no-reference", action="store_true", help="skip the in-process model/pipeline references")
    add_settings_arguments(bench, only={"model", "weights", "weights_sha256", "labels", "backend", "cache_dir",
                                        "batch_max_size", "batch_max_delay_ms", "queue_size", "decode_workers",
                                        "torch_threads", "max_image_bytes", "max_image_pixels", "max_batch_images",
                                        "jpeg_draft", "malloc_tuning"})
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
