"""`classify bench`: every mode at every concurrency against running servers, then the in-process references."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classify_client.client import NO_RETRY, AsyncClient, ClassifyError
from service.settings import Settings, settings_from_args
from service.tools.bench.images import SIZE, benchmark_images
from service.tools.bench.loadgen import Limits, closed_loop, require_loopback
from service.tools.bench.modes import MODES, PEER_MODES, Workload, open_mode
from service.tools.bench.report import table_row, write_outputs
from service.tools.bench.stats import RunResult, with_pipeline_ratios

if TYPE_CHECKING:
    from service.core.engine import Engine


@dataclass(frozen=True)
class Planned:
    """One mode against one server: ``target`` is "service" (ours), "tutorial" (the baseline) or a peer's name."""

    target: str
    mode: str
    address: str


def parse_list(text: str, kind: type = str) -> list[Any]:
    """``"1,4,16"`` -> [1, 4, 16]; empty items are ignored."""
    return [kind(item.strip()) for item in text.split(",") if item.strip()]


def parse_peer(text: str) -> tuple[str, str]:
    """``"bentoml=http://127.0.0.1:3000"`` -> ("bentoml", "http://127.0.0.1:3000")."""
    name, _, url = text.partition("=")
    if not name or not url or name in ("service", "tutorial", "in-process"):
        raise ValueError(f"--peer takes NAME=URL with a NAME other than service/tutorial/in-process; got {text!r}")
    return name, url


def plan(args: argparse.Namespace) -> list[Planned]:
    """Which mode runs against which server: tutorial-* modes against ours and the baseline when given."""
    modes = list(MODES) if args.modes == "all" else parse_list(args.modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)} (or all)")
    planned = []
    peers = [parse_peer(peer) for peer in getattr(args, "peer", None) or ()]
    for mode in modes:
        kind, tutorial_too = MODES[mode]
        if mode in PEER_MODES:
            planned += [Planned(name, mode, url) for name, url in peers]
            continue
        if getattr(args, "only_peers", False):
            continue
        planned.append(Planned("service", mode, args.grpc if kind == "grpc" else args.http))
        baseline = args.tutorial_grpc if kind == "grpc" else args.tutorial_http
        if tutorial_too and baseline:
            planned.append(Planned("tutorial", mode, baseline))
    return planned


def background_cpu(seconds: float = 1.0) -> float | None:
    """The fraction of all CPUs busy over ``seconds`` while the bench itself idles (Linux /proc/stat; None elsewhere)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total_before, idle_before = sample()
        time.sleep(seconds)
        total_after, idle_after = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total_after - total_before
    return 1.0 - (idle_after - idle_before) / total if total > 0 else None


def _model_name(options: Sequence[str] | None) -> str:
    """The served name of the first --model option (``insects=resnet18:w.pth@torch`` -> ``insects``)."""
    return options[0].partition("@")[0].partition("=")[0] if options else ""


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; 0 when every run classified images, 1 otherwise, 2 on bad usage."""
    try:
        planned = plan(args)
        concurrencies = parse_list(args.concurrency, int)
        if not concurrencies or min(concurrencies) < 1:
            raise ValueError(f"--concurrency needs positive integers; got {args.concurrency!r}")
        for address in {p.address for p in planned}:
            require_loopback(address)
        Limits(max(concurrencies), args.duration, args.max_requests, args.warmup)  # validates
        settings = settings_from_args(args)
    except ValueError as error:
        print(f"classify bench: {error}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    images = benchmark_images()
    work = Workload(tuple(images.values()), top_k=args.top_k, model=_model_name(args.model), batch_size=args.batch_size)
    meta: dict[str, Any] = {
        "name": out_dir.name,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duration_s": args.duration,
        "max_requests": args.max_requests,
        "warmup_s": args.warmup,
        "top_k": args.top_k,
        "batch_size": args.batch_size,
        "concurrency": concurrencies,
        "targets": {"grpc": args.grpc, "http": args.http, "tutorial_grpc": args.tutorial_grpc, "tutorial_http": args.tutorial_http,
                    **{name: url for name, url in (parse_peer(p) for p in getattr(args, "peer", None) or ())}},
        "images": f"{len(images)} photos as {SIZE[0]}x{SIZE[1]} JPEG, mean "
        f"{sum(map(len, images.values())) / len(images) / 1024:.0f} KiB",
        "notes": [],
    }
    busy = background_cpu()
    meta["background_cpu"] = busy
    if busy is not None and busy > 0.1:
        meta["notes"].append(
            f"WARNING: {100 * busy:.0f} % of the CPUs were busy before the first run (other processes): "
            "these numbers are skewed; measure on a quiet machine"
        )
    try:
        runs = asyncio.run(_measure(planned, concurrencies, work, args, settings, meta))
    except ClassifyError as error:
        print(f"classify bench: cannot describe the served model: {error}", file=sys.stderr)
        return 2
    runs = with_pipeline_ratios(runs)
    written = write_outputs(out_dir, meta, runs)
    print((out_dir / "report.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    empty = [f"{r.target} {r.mode} c={r.concurrency}" for r in runs if r.images == 0]
    if empty:
        print(f"classify bench: no image classified in: {'; '.join(empty)}", file=sys.stderr)
    return 1 if empty else 0


async def _measure(
    planned: Sequence[Planned], concurrencies: Sequence[int], work: Workload,
    args: argparse.Namespace, settings: Settings, meta: dict[str, Any],
) -> list[RunResult]:
    served = await _served_models(planned, args)
    meta["served"] = served
    default = served.get("defaultModel", "")
    name = work.model or default
    model: dict[str, Any] = next((m for m in served.get("models", []) if m.get("name") == name), {})
    meta["model"] = f"{name} ({model.get('architecture', '?')}, weights {model.get('version', '?')}, " \
        f"{model.get('backend', '?')} {model.get('precision', '?')} on {model.get('device', '?')})"
    runs: list[RunResult] = []
    for item in planned:
        for concurrency in concurrencies:
            mode = open_mode(item.mode, item.address, work)
            try:
                limits = Limits(concurrency, args.duration, args.max_requests, args.warmup)
                result = await closed_loop(
                    mode.send, limits, target=item.target, mode=item.mode,
                    bytes_per_image=mode.bytes_per_image(), notes={"images_per_request": mode.images_per_request},
                )
            finally:
                await mode.aclose()
            _progress(result)
            runs.append(result)
    if not args.no_reference:
        runs += await _references(work, concurrencies, args, settings, model, meta)
    return runs


async def _served_models(planned: Sequence[Planned], args: argparse.Namespace) -> dict[str, Any]:
    """Our server's ListModels in proto3 JSON (names, versions, backends), for the report; {} when ours is not loaded."""
    from classify_client.client import to_proto_json

    if not any(p.target == "service" for p in planned):
        return {}
    use_http = all(MODES[p.mode][0] == "http" for p in planned if p.target == "service")
    async with AsyncClient(args.http if use_http else args.grpc, transport="http" if use_http else "grpc", retry=NO_RETRY, timeout=10) as client:
        served = to_proto_json(await client.list_models())
    for model in served.get("models", []):
        model.pop("labels", None)  # 1000 class names say nothing about speed
    return served


async def _references(
    work: Workload, concurrencies: Sequence[int], args: argparse.Namespace, settings: Settings,
    served_model: dict[str, Any], meta: dict[str, Any],
) -> list[RunResult]:
    from service.tools.bench import reference  # torch: only when asked for

    # Loading sets this process up as the server's (torch threads, malloc thresholds).
    # The model-only runs go before the engine exists: its inference thread holds an
    # OpenMP team for good, which would throttle theirs (service/core/threads.py).
    models = reference.load_models(settings)
    engine: Engine | None = None
    try:
        loaded = next((m for m in models if m.info.name == work.model), models[0])
        meta["reference"] = {
            "model": loaded.info.name,
            "weights_sha256": loaded.info.weights_sha256,
            "backend": loaded.info.backend,
            "precision": loaded.info.precision,
            "settings": json.loads(settings.model_dump_json(exclude={"auth_tokens"})),
        }
        if served_model and served_model.get("weightsSha256") != loaded.info.weights_sha256:
            meta["notes"].append(
                f"WARNING: the in-process reference loaded weights {loaded.info.weights_sha256[:12]} but the server "
                f"serves {served_model.get('version', '?')}: pass bench the same --model/--weights as serve"
            )
        runs = []
        for batch_size in sorted({1, settings.batch_max_size}):
            limits = Limits(1, args.duration, args.max_requests, 0.0)
            runs.append(reference.model_only(loaded, work.images, batch_size, limits, settings))
            _progress(runs[-1])
        name = loaded.info.name
        del models, loaded  # one copy of the weights at a time
        engine = reference.build_engine(settings)
        for concurrency in concurrencies:
            limits = Limits(concurrency, args.duration, args.max_requests, args.warmup)
            runs.append(await reference.pipeline(engine, work.images, limits, work.top_k, name))
            _progress(runs[-1])
    finally:
        if engine is not None:
            engine.close()
    return runs


def _progress(run: RunResult) -> None:
    print("  ".join(table_row(run)), file=sys.stderr, flush=True)
