"""The `classify-client` command: classify image files with a running server, over gRPC or HTTP."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from classify_client import API_PACKAGE, __version__
from classify_client.client import ClassifyError, Client, to_proto_json


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `predict` (shared with the server's `classify predict`)."""
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--server", default="127.0.0.1:50051", help="gRPC address HOST:PORT")
    parser.add_argument(
        "--transport", choices=["grpc", "http"], default="grpc", help="call over gRPC (--server) or HTTP (--http)"
    )
    parser.add_argument("--http", default="http://127.0.0.1:8000", metavar="URL", help="HTTP gateway base URL")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--model", default="", help="served model name (default: the server's)")
    parser.add_argument("--model-version", default="", help="pin a version of the model (default: its current one)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    parser.add_argument("--json", action="store_true", help="one proto3-JSON document per image")
    parser.add_argument("--token-file", type=Path, metavar="FILE", help="bearer token, read from FILE")
    parser.add_argument("--root-ca", type=Path, metavar="PEM", help="trust this CA (turns on TLS)")
    parser.add_argument("--tls", action="store_true", help="gRPC over TLS with the system's roots")
    parser.set_defaults(run=predict)


def predict(args: argparse.Namespace) -> int:
    """Classify each image; 0 when all succeeded, 1 when any failed (each failure on stderr)."""
    status = 0
    target = args.http if args.transport == "http" else args.server
    token = args.token_file.read_text().strip() if args.token_file else None
    with Client(target, transport=args.transport, token=token, root_ca=args.root_ca, tls=args.tls) as client:
        for name in args.images:
            path = Path(name)
            try:
                response = client.classify(
                    path.read_bytes(), top_k=args.top_k, model=args.model, timeout=args.timeout,
                    model_version=args.model_version,
                )
            except OSError as error:
                print(f"{name}: cannot read: {error.strerror}", file=sys.stderr)
                status = 1
                continue
            except ClassifyError as error:
                print(f"{name}: {error.code}: {error.message}", file=sys.stderr)
                status = 1
                continue
            if args.json:
                print(json.dumps({"image": name, **to_proto_json(response)}))
            else:
                print(f"{name}  (model {response.model} @ {response.model_version})")
                for rank, p in enumerate(response.predictions, 1):
                    print(f"  {rank:>2}. {p.label:<32} {p.probability:8.4f}  [{p.class_index}]")
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classify-client", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} ({API_PACKAGE})")
    commands = parser.add_subparsers(dest="command", required=True)
    add_predict_arguments(commands.add_parser("predict", help="classify images with a running server"))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
