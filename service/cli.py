"""The `classify` command: serve, and predict against a running server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from service.errors import StartupError
from service.logs import LogFormat, configure_logging
from service.settings import Settings, SettingsProblem, add_settings_arguments, settings_from_args, unknown_environment

logger = logging.getLogger("classify")

GATEWAY_SETTINGS = {
    "host", "http_port", "grpc_upstream", "max_request_bytes", "request_timeout_s", "grace_period_s",
    "auth_token_file", "admin_token_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file", "docs", "log_level", "log_format",
    *(name for name in Settings.model_fields if name.startswith("otel_")),  # tracing (docs/tracing.md)
}


def _log_format(args: argparse.Namespace) -> LogFormat:
    """The log format asked for, even when the settings as a whole are refused (so the refusal is in it too)."""
    for candidate in (getattr(args, "log_format", None), os.environ.get("CLASSIFY_LOG_FORMAT")):
        if candidate in ("auto", "json", "text"):
            return candidate  # type: ignore[return-value]
    return "auto"


def load_settings(args: argparse.Namespace) -> Settings | None:
    """The settings, with logging configured from them; None after logging the one line that says what is wrong."""
    try:
        settings = settings_from_args(args)
    except SettingsProblem as problem:
        configure_logging("INFO", _log_format(args))
        logger.error("cannot start classify %s: %s", args.command, problem)
        return None
    configure_logging(settings.log_level, settings.log_format, trace_ids=settings.tracing)
    for line in unknown_environment():
        logger.warning("%s", line)
    return settings


def _run_server(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if settings is None:
        return 2
    # Each root imports only what it runs: the gateway loads no model library.
    if args.command == "serve":
        from service.roots.serve import serve

        run = serve(settings)
    else:
        from service.roots.gateway import serve_gateway

        run = serve_gateway(settings)
    try:
        return asyncio.run(run)
    except StartupError as error:
        logger.error("cannot start classify %s: %s", args.command, error)
        return 2


def _bench(args: argparse.Namespace) -> int:
    try:
        from service.tools.bench.cli import run  # the load generator and its references load only here
    except ImportError as error:
        if error.name and error.name.startswith("classify_client"):
            return _client_missing(args)
        raise
    return run(args)


def _weights_fetch(args: argparse.Namespace) -> int:
    import dataclasses
    import re

    from service.core.weights import OFFICIAL_WEIGHTS
    from service.tools.weights_store import FetchError, fetch, place_in_repository

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
        print(f"{path}: verified")
        if args.repository:
            folder = place_in_repository(
                path, Path(args.repository), args.name or args.model, architecture=args.model, version=args.version
            )
            print(f"{folder}: version {folder.name} of model {folder.parent.name}")
    except (FetchError, OSError) as error:
        print(f"classify weights fetch: {error}", file=sys.stderr)
        return 1
    return 0


def _weights_add(args: argparse.Namespace) -> int:
    from service.tools.weights_store import FetchError, place_in_repository

    try:
        folder = place_in_repository(
            Path(args.file), Path(args.repository), args.name, architecture=args.architecture,
            version=args.version, labels=Path(args.labels) if args.labels else None, backend=args.backend,
        )
    except (FetchError, OSError) as error:
        print(f"classify weights add: {error}", file=sys.stderr)
        return 1
    print(f"{folder}: version {folder.name} of model {folder.parent.name}")
    return 0


def _weights(args: argparse.Namespace) -> int:
    if args.weights_command == "fetch":
        return _weights_fetch(args)
    if args.weights_command == "add":
        return _weights_add(args)
    return _weights_scan(args)


CLIENT_MISSING = (
    "the Python client is not installed (serving does not need it): "
    "pip install ./clients/python from the source tree, then run this again"
)


def _client_missing(args: argparse.Namespace) -> int:
    print(f"classify {args.command}: {CLIENT_MISSING}", file=sys.stderr)
    return 2


def _client_cli() -> ModuleType | None:
    """The Python client's command-line module, when the client is installed (`classify predict`, `models`)."""
    try:
        from classify_client import cli
    except ImportError:
        return None
    return cli


def _models(args: argparse.Namespace) -> int:
    from classify_client.cli import UsageError, client_from_args
    from classify_client.client import ClassifyError

    try:
        client = client_from_args(args)
    except UsageError as error:
        print(f"classify models {args.models_command}: {error}", file=sys.stderr)
        return 2
    with client:
        try:
            if args.models_command == "load":
                infos = [client.load_model(args.name, args.version)]
            elif args.models_command == "unload":
                infos = [client.unload_model(args.name, args.version)]
            else:
                infos = list(client.list_models().models)
        except ClassifyError as error:
            print(f"classify models {args.models_command}: {error.code}: {error.message}", file=sys.stderr)
            return 1
    print(f"{'model':<20} {'version':<14} {'state':<10} reason")
    for info in infos:
        for status in info.versions:
            state = status.state.name.removeprefix("STATE_")
            current = " (current)" if status.version == info.version and state == "READY" else ""
            print(f"{info.name:<20} {status.version:<14} {state:<10} {status.reason}{current}")
    return 0


def _weights_scan(args: argparse.Namespace) -> int:
    from service.tools.weights_store import scan

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
    from service.tools.quantize import quantize_model

    settings = load_settings(args)
    if settings is None:
        return 2
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


def _export(args: argparse.Namespace) -> int:
    from service.tools.export import describe, export

    settings = settings_from_args(args)
    configure_logging(settings.log_level, "text")
    try:
        result = export(
            args.model_option, settings,
            out=Path(args.out) if args.out else None,
            repository=Path(args.repository) if args.repository else None,
            name=args.name, version=args.version,
        )
    except StartupError as error:
        print(f"classify export: {error}", file=sys.stderr)
        return 2
    print(describe(result))
    return 0


CLIENT_COMMANDS = ("predict", "models")


def build_parser(client: bool = True) -> argparse.ArgumentParser:
    """The `classify` command. ``client``: load the Python client for `predict` and `models` (main()
    does only when one of them runs: the client's import is time every other start would pay)."""
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

    export = commands.add_parser(
        "export", help="write a model's ONNX graph and manifest: served by ONNX Runtime without torch"
    )
    export.add_argument("model_option", metavar="MODEL", help="resnet18, efficientnet_lite0 or NAME=ARCH:WEIGHTS[:LABELS]")
    where = export.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, metavar="DIR",
                       help="write DIR/NAME.onnx and DIR/NAME.json (serve with --model DIR/NAME.onnx); "
                       "default: the graph cache `classify serve` reads (beside the weights, else --cache-dir)")
    where.add_argument("--repository", default=None, metavar="DIR", help="place it as a new version in this model repository")
    export.add_argument("--name", default=None, help="model name in the repository (default: the model's)")
    export.add_argument("--version", type=int, default=None, help="version number (default: one above the highest)")
    add_settings_arguments(export, only={"weights", "weights_sha256", "labels", "cache_dir", "log_level"})
    export.set_defaults(run=_export)

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
    fetch.add_argument("--repository", default=None, metavar="DIR", help="also place the file as a version of model --name in this model repository")
    fetch.add_argument("--name", default=None, help="model name in the repository (default: the architecture)")
    fetch.add_argument("--version", type=int, default=None, help="version number (default: one above the highest)")
    add = weights_commands.add_parser("add", help="place a weights file as a new version in a model repository")
    add.add_argument("file", metavar="FILE", help="a state dict (.pth) of the architecture")
    add.add_argument("--repository", required=True, metavar="DIR", help="the model repository")
    add.add_argument("--name", required=True, help="the model's name (its folder)")
    add.add_argument("--architecture", required=True, help="resnet18 or efficientnet_lite0")
    add.add_argument("--version", type=int, default=None, help="version number (default: one above the highest)")
    add.add_argument("--labels", default=None, metavar="FILE", help="labels file, one class a line (default: ImageNet's)")
    add.add_argument("--backend", default=None, help="backend of this version (default: the server's --backend)")
    weights.set_defaults(run=_weights)

    models = commands.add_parser("models", help="list, load and unload the models of a running server")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    models_list = models_commands.add_parser("list", help="every model, its versions and their states")
    models_load = models_commands.add_parser("load", help="load a model of the repository (every version, or --version)")
    models_unload = models_commands.add_parser("unload", help="unload a model (every version, or --version)")
    for command in (models_load, models_unload):
        command.add_argument("name", metavar="NAME")
        command.add_argument("--version", default="", help="one version only")
    client_cli = _client_cli() if client else None
    for command in (models_list, models_load, models_unload):
        if client_cli is None:
            command.add_argument("arguments", nargs=argparse.REMAINDER)
            command.set_defaults(run=_client_missing)
        else:
            # The client's connection options (TLS, mTLS, token), declared once in classify_client.cli;
            # loads wait for the warm-up, hence the longer deadline.
            client_cli.add_connection_arguments(command, timeout=120.0)
            command.set_defaults(run=_models)

    # The client library's own command, so both behave alike (classify-client predict ...).
    predict = commands.add_parser("predict", help="classify images with a running server")
    if client_cli is None:
        predict.add_argument("arguments", nargs=argparse.REMAINDER)
        predict.set_defaults(run=_client_missing)
    else:
        client_cli.add_predict_arguments(predict)
        predict.set_defaults(prog="classify predict")

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

    from service.tools.cluster.cli import add_parser as add_cluster_parser  # imports nothing heavy

    add_cluster_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    args = build_parser(client=command in CLIENT_COMMANDS).parse_args(arguments)
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
