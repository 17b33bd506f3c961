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
from service.settings import add_settings_arguments, settings_from_args

GATEWAY_SETTINGS = {
    "host", "http_port", "grpc_upstream", "max_request_bytes", "request_timeout_s", "grace_period_s", "log_level",
}


def _run_server(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as error:  # pydantic's ValidationError names the bad setting
        print(f"classify serve: invalid configuration:\n{error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve gRPC (and HTTP) until SIGTERM")
    add_settings_arguments(serve, exclude={"grpc_upstream"})
    serve.set_defaults(run=_run_server)

    gateway = commands.add_parser("gateway", help="serve only HTTP, forwarding to a remote gRPC server")
    add_settings_arguments(gateway, only=GATEWAY_SETTINGS)
    gateway.set_defaults(run=_run_server)

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
