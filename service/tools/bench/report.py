"""Writing a benchmark's results: results.json, report.md (a Markdown table) and PNG plots."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service.tools.bench.stats import RunResult

logger = logging.getLogger(__name__)

COLUMNS = (
    "target", "mode", "concurrency", "img/s", "p50 ms", "p90 ms", "p99 ms",
    "bytes/img", "client CPU s/img", "errors", "× pipeline",
)


def _number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _errors(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{code} {count}" for code, count in errors.items()) or "0"


def table_row(run: RunResult) -> list[str]:
    return [
        run.target,
        run.mode,
        str(run.concurrency),
        _number(run.throughput),
        _number(run.p50_ms),
        _number(run.p90_ms),
        _number(run.p99_ms),
        _number(run.bytes_per_image, 0),
        _number(run.client_cpu_per_image_s, 4),
        _errors(run.errors),
        _number(run.ratio_to_pipeline, 2),
    ]


def render_markdown(meta: Mapping[str, Any], runs: Sequence[RunResult], plots: Sequence[str] = ()) -> str:
    """The report: what was measured and how, one table row per run, then the plots."""
    lines = [
        f"# classify bench — {meta.get('name', 'results')}",
        "",
        f"- when: {meta.get('started', '?')}; machine: {meta.get('cpus', '?')} CPUs, {meta.get('platform', '?')}",
        f"- model: {meta.get('model', '?')}; closed loop, {meta.get('duration_s', '?')} s or "
        f"{meta.get('max_requests', '?')} requests per run (whichever first), "
        f"{meta.get('warmup_s', 0)} s warm-up; top-K {meta.get('top_k', '?')}; "
        f"{meta.get('images', '?')}",
        "- img/s counts images classified; latency is per request (a whole batch for grpc-batch); "
        "bytes/img is the request payload (gRPC framing included, HTTP headers not); client CPU is "
        "the load generator's process time; × pipeline divides img/s by the in-process "
        "decode+preprocess+infer engine's at the same concurrency.",
    ]
    lines += [f"- {note}" for note in meta.get("notes", ())]
    lines += [
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(COLUMNS))) + "|",
    ]
    lines += ["| " + " | ".join(table_row(run)) + " |" for run in runs]
    if plots:
        lines += [""] + [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def plot(runs: Sequence[RunResult], out_dir: Path) -> list[str]:
    """throughput.png and p99.png: one line per target/mode against concurrency; file names written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    series: dict[str, list[RunResult]] = {}
    for run in runs:
        if run.target == "in-process" and run.mode != "pipeline":
            continue  # model-only references are horizontal lines, drawn below
        series.setdefault(f"{run.target}: {run.mode}", []).append(run)
    concurrencies = sorted({run.concurrency for run in runs})
    written = []
    for name, label, value in (
        ("throughput.png", "images / s", lambda r: r.throughput),
        ("p99.png", "p99 latency (ms)", lambda r: r.p99_ms),
    ):
        figure, axes = plt.subplots(figsize=(9, 5.5))
        axes.set_prop_cycle(color=[plt.get_cmap("tab20")(i) for i in range(20)])  # up to 20 series stay distinct
        for series_name, points in sorted(series.items()):
            points = sorted(points, key=lambda r: r.concurrency)
            ys = [value(r) for r in points]
            style = "--" if series_name.startswith("in-process") else ("-." if series_name.startswith("tutorial") else "-")
            axes.plot([r.concurrency for r in points], [float("nan") if y is None else y for y in ys], style, marker="o", label=series_name)
        if name == "throughput.png":
            for run in runs:
                if run.target == "in-process" and run.mode.startswith("model-"):
                    axes.axhline(run.throughput, color="grey", linestyle=":", linewidth=1)
                    axes.annotate(f"{run.mode} {run.throughput:.0f}", (concurrencies[0], run.throughput), fontsize=8, color="grey")
        axes.set_xscale("log", base=2)
        axes.set_xticks(concurrencies, [str(c) for c in concurrencies])
        axes.set_xlabel("concurrency (requests in flight)")
        axes.set_ylabel(label)
        axes.set_ylim(bottom=0)
        axes.set_title(f"{label} by mode and concurrency")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="best")
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        written.append(name)
    return written


def write_outputs(out_dir: Path, meta: Mapping[str, Any], runs: Sequence[RunResult]) -> list[Path]:
    """results.json, the plots (when matplotlib is installed) and report.md in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.json"
    results.write_text(json.dumps({"meta": meta, "runs": [run.to_json() for run in runs]}, indent=2) + "\n")
    try:
        plots = plot(runs, out_dir)
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        plots = []
    report = out_dir / "report.md"
    report.write_text(render_markdown(meta, runs, plots))
    return [results, report, *(out_dir / p for p in plots)]
