"""The `classify-client` command: classify image files with a running server, over gRPC or HTTP."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from classify_client import API_PACKAGE, __version__
from classify_client.client import ClassifyError, Client, to_proto_json


class UsageError(Exception):
    """A connection option that cannot be used: one line for stderr."""


def add_connection_arguments(parser: argparse.ArgumentParser, *, timeout: float = 30.0) -> None:
    """Where the server is and how to reach it: every client command takes the same options."""
    parser.add_argument("--server", default="127.0.0.1:50051", help="gRPC address HOST:PORT")
    parser.add_argument(
        "--transport", choices=["grpc", "http"], default="grpc", help="call over gRPC (--server) or HTTP (--http)"
    )
    parser.add_argument(
        "--http", default="http://127.0.0.1:8000", metavar="URL", help="HTTP gateway base URL (https:// for TLS)"
    )
    parser.add_argument("--timeout", type=float, default=timeout, help=f"deadline in seconds (default {timeout:g})")
    parser.add_argument(
        "--token-file", type=Path, metavar="FILE",
        help="bearer token, read from FILE (default: env CLASSIFY_TOKEN; never a flag, which `ps` shows)",
    )
    parser.add_argument("--tls", action="store_true", help="gRPC over TLS with the system's roots")
    parser.add_argument("--root-ca", type=Path, metavar="PEM", help="trust this CA (turns on TLS)")
    parser.add_argument("--client-cert", type=Path, metavar="PEM", help="client certificate chain (mTLS; with --client-key)")
    parser.add_argument("--client-key", type=Path, metavar="PEM", help="private key of --client-cert")


def _readable(path: Path, flag: str) -> Path:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot be read ({(error.strerror or str(error)).lower()})") from None
    return path


def token_from(args: argparse.Namespace) -> str | None:
    """The bearer token: --token-file, else CLASSIFY_TOKEN, else none."""
    if args.token_file is not None:
        token = _readable(args.token_file, "--token-file").read_text(encoding="utf-8").strip()
        if not token:
            raise UsageError(f"--token-file {args.token_file}: the file is empty")
        return token
    return os.environ.get("CLASSIFY_TOKEN", "").strip() or None


def client_from_args(args: argparse.Namespace) -> Client:
    """A Client from the connection options; UsageError names an option that cannot be used."""
    if (args.client_cert is None) != (args.client_key is None):
        raise UsageError("--client-cert and --client-key go together: give both, or neither")
    if args.transport == "http" and not args.http.startswith(("http://", "https://")):
        raise UsageError(f"--http {args.http}: not a base URL such as http://127.0.0.1:8000")
    root_ca = _readable(args.root_ca, "--root-ca") if args.root_ca else None
    client_cert = (
        (_readable(args.client_cert, "--client-cert"), _readable(args.client_key, "--client-key"))
        if args.client_cert else None
    )
    target = args.http if args.transport == "http" else args.server
    try:
        return Client(
            target, transport=args.transport, token=token_from(args), root_ca=root_ca, client_cert=client_cert,
            tls=args.tls, timeout=args.timeout,
        )
    except (ValueError, OSError, ssl.SSLError) as error:
        raise UsageError(f"cannot set up the connection: {error}") from None


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `predict` (shared with the server's `classify predict`)."""
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument(
        "--top-k", type=int, default=0,
        help="classes per image (default 0: the server's default, 5 or the model's class count if fewer)",
    )
    parser.add_argument("--model", default="", help="served model name (default: the server's)")
    parser.add_argument("--model-version", default="", help="pin a version of the model (default: its current one)")
    parser.add_argument("--json", action="store_true", help="one proto3-JSON document per image")
    add_connection_arguments(parser)
    parser.set_defaults(run=predict)


def predict(args: argparse.Namespace) -> int:
    """Classify each image; 0 when all succeeded, 1 when any failed (each failure on stderr), 2 on bad options."""
    status = 0
    try:
        client = client_from_args(args)
    except UsageError as error:
        print(f"{args.prog}: {error}", file=sys.stderr)
        return 2
    with client:
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
    predict_parser = commands.add_parser("predict", help="classify images with a running server")
    add_predict_arguments(predict_parser)
    predict_parser.set_defaults(prog="classify-client predict")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
