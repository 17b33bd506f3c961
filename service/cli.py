"""The `classify` command: serve, and predict against a running server."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from service.core.errors import StartupError
from service.request_context import configure_logging
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
    configure_logging(settings.log_level, settings.log_format == "json")
    from service import app  # heavy imports (torch) only for serving

    entry = app.serve if args.command == "serve" else app.serve_gateway
    try:
        return asyncio.run(entry(settings))
    except StartupError as error:
        logging.getLogger("classify").error("cannot start: %s", error)
        return 2


def _predict(args: argparse.Namespace) -> int:
    import grpc
    from classify.v1 import classify_pb2 as pb
    from classify.v1 import classify_pb2_grpc as pb_grpc
    from google.protobuf import json_format

    status = 0
    with grpc.insecure_channel(args.server) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        for name in args.images:
            path = Path(name)
            try:
                request = pb.ClassifyRequest(image=path.read_bytes(), top_k=args.top_k, model=args.model)
                response = stub.Classify(request, timeout=args.timeout)
            except OSError as error:
                print(f"{name}: cannot read: {error.strerror}", file=sys.stderr)
                status = 1
                continue
            except grpc.RpcError as error:
                print(f"{name}: {error.code().name}: {error.details()}", file=sys.stderr)
                status = 1
                continue
            if args.json:
                document = json_format.MessageToDict(response)
                print(json.dumps({"image": name, **document}))
            else:
                print(f"{name}  (model {response.model} @ {response.model_version})")
                for rank, p in enumerate(response.predictions, 1):
                    print(f"  {rank:>2}. {p.label:<32} {p.probability:8.4f}  [{p.class_index}]")
    return status


def _weights_fetch(args: argparse.Namespace) -> int:
    from service.core.weights import OFFICIAL_WEIGHTS
    from service.weights_store import FetchError, fetch

    try:
        path = fetch(OFFICIAL_WEIGHTS[args.model], Path(args.dir), url=args.url, timeout=args.timeout)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve gRPC (and HTTP) until SIGTERM")
    add_settings_arguments(serve, exclude={"grpc_upstream"})
    serve.set_defaults(run=_run_server)

    gateway = commands.add_parser("gateway", help="serve only HTTP, forwarding to a remote gRPC server")
    add_settings_arguments(gateway, only=GATEWAY_SETTINGS)
    gateway.set_defaults(run=_run_server)

    weights = commands.add_parser("weights", help="fetch, list and verify weights files")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True)
    fetch = weights_commands.add_parser("fetch", help="download an official weights file, verified")
    fetch.add_argument("model", choices=["resnet18"])
    fetch.add_argument("--url", default=None, help="a mirror of the official file (same bytes)")
    fetch.add_argument("--timeout", type=float, default=10.0, help="network timeout in seconds")
    listing = weights_commands.add_parser("list", help="show weights files and their status")
    verify = weights_commands.add_parser("verify", help="re-check every file's digest")
    for command in (fetch, listing, verify):
        command.add_argument("--dir", default="weights", help="weights directory (default: weights)")
    weights.set_defaults(run=lambda a: _weights_fetch(a) if a.weights_command == "fetch" else _weights_scan(a))

    predict = commands.add_parser("predict", help="classify images with a running server")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--server", default="127.0.0.1:50051", help="gRPC address HOST:PORT")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--model", default="", help="served model name (default: the server's)")
    predict.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    predict.add_argument("--json", action="store_true", help="one proto3-JSON document per image")
    predict.set_defaults(run=_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
