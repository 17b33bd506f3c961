"""What holds `classify serve`'s memory: ResNet18 on onnxruntime with one setting changed at a time.

    .venv/bin/python -m bench.memory_variants                   # every variant, 3 rounds
    .venv/bin/python -m bench.memory_variants --variants default,no-arena --rounds 5

Each round starts `classify serve` once per variant (the order rotating between rounds), with
deterministic random-init ResNet18 weights whose graph `classify export` wrote; reads RSS idle,
samples it every 100 ms while `classify bench` runs a closed loop at concurrency 16 (grpc-unary,
then http-multipart), and reads VmHWM (the peak since start: loading included). Throughput is
compared with the default's in the same round. Settings that are not `classify serve` flags
(ONNX Runtime's session options) are applied by starting the server through this module, which
patches onnxruntime.SessionOptions before running `classify serve`: nothing in the service changes.

Prints the report and writes bench/results/NAME/ (summary.json, report.md; logs/ is not kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import REPO
from bench.slim_targets import MODES, Sampler, Tree, _load, _mb, cpu_seconds, load, rss_by_component, rss_mib, serving


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)  # onnxruntime.SessionOptions attributes
    entries: dict[str, str] = field(default_factory=dict)  # onnxruntime session config entries
    ort_format: bool = False  # serve the graph converted to ONNX Runtime's own format (see ort_format_graph)


VARIANTS = {v.name: v for v in (
    Variant("default", "the defaults"),
    Variant("no-arena", "ONNX Runtime's CPU memory arena off (enable_cpu_mem_arena=False)",
            attributes={"enable_cpu_mem_arena": False}),
    Variant("no-mem-pattern", "ONNX Runtime's memory pattern planning off (enable_mem_pattern=False)",
            attributes={"enable_mem_pattern": False}),
    Variant("no-prepacking", "ONNX Runtime keeps no pre-packed copy of the weights (session.disable_prepacking)",
            entries={"session.disable_prepacking": "1"}),
    Variant("arena-max-2", "glibc malloc arenas capped at 2 (MALLOC_ARENA_MAX=2): decode, gRPC and ORT threads share",
            env={"MALLOC_ARENA_MAX": "2"}),
    Variant("no-malloc-tuning", "--malloc-tuning false: glibc's default mmap/trim thresholds",
            flags=("--malloc-tuning", "false")),
    Variant("ort-format", "the graph pre-optimized (level ALL: hardware specific) in ONNX Runtime's format, "
            "its bytes used in place (session.use_ort_model_bytes_directly, ..._for_initializers)", ort_format=True),
)}


def ort_format_graph(graph: Path, out: Path) -> Path:
    """``graph`` optimized at ORT_ENABLE_ALL and saved in ONNX Runtime's format (in a separate process).

    Level ALL includes the NCHWc layout for this CPU's vector width: such a file is for the machine
    that wrote it (ONNX Runtime warns so). At the portable level (EXTENDED) the layout is not
    applied at load either, and inference was about 1.5x slower here.
    """
    code = (
        "import sys, onnxruntime as ort\n"
        "o = ort.SessionOptions()\n"
        "o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL\n"
        "o.optimized_model_filepath = sys.argv[2]\n"
        "o.add_session_config_entry('session.save_model_format', 'ORT')\n"
        "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(graph), str(out)], check=True, capture_output=True)
    return out


def _patch_and_serve(config: dict[str, Any], argv: list[str]) -> int:
    """Run `classify ARGV` with onnxruntime.SessionOptions patched by ``config``."""
    import onnxruntime as ort

    original = ort.SessionOptions

    def session_options() -> Any:
        options = original()
        for attribute, value in config.get("attributes", {}).items():
            setattr(options, attribute, value)
        for key, value in config.get("entries", {}).items():
            options.add_session_config_entry(key, value)
        return options

    ort.SessionOptions = session_options  # type: ignore[misc,assignment]
    if config.get("ort_model"):
        session = ort.InferenceSession

        def ort_format_session(path: str, options: Any, **kwargs: Any) -> Any:
            options.add_session_config_entry("session.use_ort_model_bytes_directly", "1")
            options.add_session_config_entry("session.use_ort_model_bytes_for_initializers", "1")
            return session(config["ort_model"], options, **kwargs)

        ort.InferenceSession = ort_format_session  # type: ignore[misc,assignment]
    from service.cli import main as classify

    classify(argv)  # exits
    return 0


class VariantTree(Tree):
    """This tree, its server started through this module with a variant's settings."""

    def __init__(self, variant: Variant, ort_model: Path | None = None) -> None:
        super().__init__(variant.name, REPO)
        self.variant, self.ort_model = variant, ort_model

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.variant.env}

    def command(self, *args: str) -> list[str]:
        config = json.dumps({"attributes": self.variant.attributes, "entries": self.variant.entries,
                             "ort_model": str(self.ort_model) if self.ort_model else None})
        return [sys.executable, "-m", "bench.memory_variants", "--serve-with", config, "--", *args, *self.variant.flags]


def measure(variant: Variant, weights: Path, work: Path, duration: str) -> dict[str, Any]:
    ort_model = None
    if variant.ort_format:
        (graph,) = weights.parent.glob(f"{weights.name.split('-')[0]}-*-fp32-*.onnx")
        ort_model = ort_format_graph(graph, work / "graph.ort")
    with serving(VariantTree(variant, ort_model), weights, work.parent, work.name) as (process, grpc_address, http_url, ready):
        cpu_to_ready = cpu_seconds(process.pid)
        idle = rss_mib(process.pid)[0]
        with Sampler(process.pid) as sampler:
            throughput = load(work, grpc_address=grpc_address, http_url=http_url, modes=MODES, duration=duration)
        after, peak = rss_mib(process.pid)
        return {"ready_s": ready, "cpu_to_ready_s": cpu_to_ready, "rss_idle_mib": idle, "rss_load_max_mib": max(sampler.samples), "rss_after_mib": after,
                "vmhwm_mib": peak, "throughput": throughput, "rss_by_component_mib": rss_by_component(process.pid)}


def report(summary: dict[str, Any]) -> str:
    rounds, names = summary["rounds"], summary["variants"]

    def median(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in rounds)

    lines = [
        "# What holds `classify serve`'s memory (ResNet18, onnxruntime fp32)", "",
        f"`{summary['command']}` on {summary['cpus']} CPUs (a machine shared with other work), {summary['date']}, "
        f"{len(rounds)} rounds, the variants' order rotating; closed loop at concurrency 16, {summary['duration']} s "
        "a mode (grpc-unary, then http-multipart). RSS in MB (10^6 bytes): idle after warm-up, the largest 100 ms "
        "sample under load, VmHWM (the peak since start, loading included). Throughput: the variant's over the "
        "default's in the same round, median of rounds.", "",
        "| variant | idle | under load | VmHWM | anonymous under load | " + " | ".join(f"{m} / default" for m in MODES)
        + " | ready s | CPU s by ready | what |", "|---|---:|---:|---:|---:|" + "---:|" * len(MODES) + "---:|---:|---|",
    ]
    for name in names:
        ratios = []
        for mode in MODES:
            values = [r[name]["throughput"][mode] / r["default"]["throughput"][mode] for r in rounds]
            ratios.append(f"{statistics.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})")
        anonymous = statistics.median(r[name]["rss_by_component_mib"].get("anonymous (heap, arenas, stacks)", 0.0)
                                      for r in rounds)
        lines.append(f"| {name} | {_mb(median(name, 'rss_idle_mib')):.0f} | {_mb(median(name, 'rss_load_max_mib')):.0f} | "
                     f"{_mb(median(name, 'vmhwm_mib')):.0f} | {_mb(anonymous):.0f} | " + " | ".join(ratios)
                     + f" | {median(name, 'ready_s'):.2f} | {median(name, 'cpu_to_ready_s'):.2f} | {VARIANTS[name].what} |")
    lines += ["", "Every round (RSS MB idle / under load / VmHWM; img/s " + " / ".join(MODES) + "):", ""]
    for i, r in enumerate(rounds, 1):
        cells = [f"{name} {_mb(r[name]['rss_idle_mib']):.0f} / {_mb(r[name]['rss_load_max_mib']):.0f} / "
                 f"{_mb(r[name]['vmhwm_mib']):.0f}, " + " / ".join(f"{r[name]['throughput'][m]:.1f}" for m in MODES)
                 for name in r["order"]]
        lines.append(f"- round {i}: " + "; ".join(cells))
    lines += ["", f"Load average (1, 5, 15 min): {'; '.join(summary['load_average'])}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve-with"]:
        return _patch_and_serve(json.loads(argv[1]), argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="memory-variants")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, default first (%(default)s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="10", help="seconds per mode and round")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown or "default" not in names:
        parser.error(f"--variants: unknown {sorted(unknown)}; known {sorted(VARIANTS)} (default is required)")
    out = REPO / "bench" / "results" / args.name
    logs = out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    load_average = [f"before: {_load()}"]
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="classify-memory-") as scratch:
        from bench.harness import random_resnet18_weights  # torch: only to generate them

        weights = random_resnet18_weights(Path(scratch))
        subprocess.run([sys.executable, "-m", "service.cli", "export", "resnet18", "--weights", str(weights)], cwd=REPO,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(args.rounds):
            order = names[i % len(names):] + names[: i % len(names)]
            result: dict[str, Any] = {"order": order}
            for name in order:
                work = logs / f"round{i + 1}-{name}"
                work.mkdir()
                result[name] = measured = measure(VARIANTS[name], weights, work, args.duration)
                print(f"memory_variants: round {i + 1} {name}: RSS idle {_mb(measured['rss_idle_mib']):.0f} MB, "
                      f"load max {_mb(measured['rss_load_max_mib']):.0f} MB, VmHWM {_mb(measured['vmhwm_mib']):.0f} MB, "
                      f"img/s {measured['throughput']}", file=sys.stderr)
            rounds.append(result)
            load_average.append(f"after round {i + 1}: {_load()}")
    summary = {
        "command": "python -m bench.memory_variants" + (" " + shlex.join(argv) if argv else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
        "duration": args.duration, "variants": names, "rounds": rounds, "load_average": load_average,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = report(summary)
    (out / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
