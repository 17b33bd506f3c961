"""The `classify cluster` subcommand: flags, seeding an empty repository, running until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

CLUSTER_DIR = Path(".cluster")
RESNET18_WEIGHTS = Path("weights/resnet18-f37072fd.pth")


def add_parser(commands: Any) -> None:
    """Register `classify cluster` on the `classify` command's subparsers."""
    cluster = commands.add_parser(
        "cluster", help="N replicas sharing one model repository behind Envoy on this machine, until Ctrl-C",
        description="Runs N `classify serve` replicas on free loopback ports, all serving one model repository "
        "with --model-control poll, behind Envoy configured from deploy/envoy/envoy.yaml (static endpoints). "
        "A replica that exits is restarted on the same ports. Ctrl-C drains every replica, then stops Envoy. "
        "Flags after `--` go to every `classify serve`.",
    )
    cluster.add_argument("--replicas", type=int, default=3, metavar="N", help="replicas to run (default 3)")
    cluster.add_argument(
        "--model-repository", type=Path, default=CLUSTER_DIR / "repository", metavar="DIR",
        help="the repository every replica serves and polls (default .cluster/repository); an empty one is "
        "seeded with --weights as resnet18 version 1",
    )
    cluster.add_argument(
        "--weights", type=Path, default=None, metavar="FILE",
        help=f"ResNet18 weights to seed an empty repository with (default {RESNET18_WEIGHTS} when present, "
        "else the bundled EfficientNet-Lite0)",
    )
    cluster.add_argument("--run-dir", type=Path, default=None, metavar="DIR",
                         help="logs, the rendered Envoy config and its access log (default: a new folder under .cluster/)")
    cluster.add_argument("--cache-dir", type=Path, default=CLUSTER_DIR / "cache", metavar="DIR",
                         help="the ONNX graph cache all replicas share (default .cluster/cache)")
    cluster.add_argument("--host", default="127.0.0.1", help="address Envoy's listeners bind (default 127.0.0.1)")
    cluster.add_argument("--grpc-port", type=int, default=50051, help="Envoy's gRPC port (0: a free one; default 50051)")
    cluster.add_argument("--http-port", type=int, default=8000, help="Envoy's HTTP port (0: a free one; default 8000)")
    cluster.add_argument("--admin-port", type=int, default=9901,
                         help="Envoy's admin port, on 127.0.0.1 only (0: a free one; default 9901)")
    cluster.add_argument("--poll-s", type=float, default=2.0, help="seconds between repository rescans (default 2)")
    cluster.add_argument("--envoy", type=Path, default=None, metavar="PATH",
                         help="the envoy binary (default .venv-envoy/bin/envoy from `make envoy`, else PATH)")
    cluster.add_argument("--envoy-concurrency", type=int, default=1, metavar="N",
                         help="Envoy worker threads (default 1: the replicas need the cores)")
    cluster.add_argument("--no-restart", action="store_true", help="leave a replica that exits down")
    cluster.add_argument("serve_flags", nargs=argparse.REMAINDER, metavar="-- SERVE FLAGS",
                         help="flags for every `classify serve` (e.g. -- --batch-max-size 4)")
    cluster.set_defaults(run=run)


def _seed(repository: Path, weights: Path | None) -> str | None:
    """Put one model version in an empty repository; returns what was put there (None: it had models)."""
    from service.core import efficientnet_lite0
    from service.tools.weights_store import place_in_repository

    if repository.is_dir() and any(repository.glob("*/[0-9]*/model.toml")):
        return None
    if weights is None and RESNET18_WEIGHTS.is_file():
        weights = RESNET18_WEIGHTS
    if weights is not None:
        folder = place_in_repository(weights, repository, "resnet18", architecture="resnet18", version=1)
    else:
        folder = place_in_repository(efficientnet_lite0.bundled_weights_path(), repository, "efficientnet_lite0",
                                     architecture="efficientnet_lite0", version=1)
    return f"{folder} (from {weights or 'the bundled EfficientNet-Lite0'})"


def run(args: argparse.Namespace) -> int:
    from service.tools.cluster.runner import Cluster, ClusterConfig, ClusterError, find_envoy, free_port
    from service.tools.weights_store import FetchError

    if args.replicas < 1:
        print("classify cluster: --replicas must be at least 1", file=sys.stderr)
        return 2
    try:
        envoy = find_envoy(args.envoy)
        seeded = _seed(args.model_repository, args.weights)
    except (ClusterError, FetchError, OSError) as error:
        print(f"classify cluster: {error}", file=sys.stderr)
        return 2
    if seeded:
        print(f"classify cluster: seeded the empty repository: {seeded}", flush=True)
    CLUSTER_DIR.mkdir(exist_ok=True)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="run-", dir=CLUSTER_DIR))
    config = ClusterConfig(
        replicas=args.replicas, repository=args.model_repository.resolve(), run_dir=run_dir.resolve(),
        envoy=envoy, cache_dir=args.cache_dir.resolve(), host=args.host,
        grpc_port=args.grpc_port or free_port(), http_port=args.http_port or free_port(),
        admin_port=args.admin_port or free_port(), poll_s=args.poll_s,
        envoy_concurrency=args.envoy_concurrency, restart=not args.no_restart,
        serve_flags=tuple(args.serve_flags[1:] if args.serve_flags[:1] == ["--"] else args.serve_flags),
    )
    stop_requested = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    # Children run in their own process groups: a terminal's Ctrl-C reaches only this process,
    # which stops them in order (replicas drain, then Envoy).
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    cluster = Cluster(config)
    try:
        cluster.start()
        cluster.describe()
        cluster.supervise(lambda: stop_requested)
    except ClusterError as error:
        print(f"classify cluster: {error}", file=sys.stderr, flush=True)
        cluster.stop()
        return 1
    return cluster.stop()
