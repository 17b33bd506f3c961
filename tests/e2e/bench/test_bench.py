"""`classify bench`: percentiles and aggregation, the closed loop, the report, and one tiny real run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from bench.harness import REPO, ServerProcess
from classify_client.client import ClassifyError
from service.tools.bench.cli import plan
from service.tools.bench.loadgen import Limits, Sent, closed_loop, require_loopback
from service.tools.bench.report import render_markdown
from service.tools.bench.stats import RunResult, percentile, summarize, with_pipeline_ratios


def _run(target: str, mode: str, concurrency: int, throughput: float, **fields: object) -> RunResult:
    base = summarize(
        target=target, mode=mode, concurrency=concurrency, latencies_s=[0.01, 0.02], images=int(throughput),
        errors={}, elapsed_s=1.0, cpu_s=0.5, bytes_per_image=1000.0,
    )
    return RunResult(**{**base.to_json(), **fields})


@pytest.mark.parametrize("values", [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0, 10.0], list(np.random.default_rng(0).random(101))])
def test_percentile_interpolates_like_numpy(values: list[float]) -> None:
    """Linear interpolation between closest ranks, as numpy.percentile's default."""
    for q in (0, 1, 25, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_none_and_q_is_checked() -> None:
    """No samples, no percentile; q outside 0..100 is a mistake."""
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_aggregates_a_run() -> None:
    """Throughput in images/s, latencies in ms, CPU per image, errors sorted by code."""
    run = summarize(
        target="service", mode="grpc-batch", concurrency=2, latencies_s=[0.1, 0.2, 0.3, 0.4], images=32,
        errors={"UNAVAILABLE": 1, "INVALID_ARGUMENT": 2}, elapsed_s=2.0, cpu_s=0.64, bytes_per_image=5e4,
    )
    assert (run.requests, run.images, run.throughput) == (4, 32, 16.0)
    assert run.p50_ms == pytest.approx(250.0) and run.p99_ms == pytest.approx(397.0) and run.mean_ms == pytest.approx(250.0)
    assert run.client_cpu_per_image_s == pytest.approx(0.02)
    assert list(run.errors) == ["INVALID_ARGUMENT", "UNAVAILABLE"]
    empty = summarize(target="t", mode="m", concurrency=1, latencies_s=[], images=0, errors={"UNAVAILABLE": 5},
                      elapsed_s=1.0, cpu_s=0.1, bytes_per_image=None)
    assert empty.p50_ms is None and empty.client_cpu_per_image_s is None and empty.throughput == 0.0
    assert RunResult.from_json(json.loads(json.dumps(run.to_json()))) == run


def test_ratios_divide_by_the_pipeline_at_the_same_concurrency() -> None:
    """Remote runs get img/s over the in-process pipeline's; references and unmatched concurrencies get none."""
    runs = with_pipeline_ratios([
        _run("service", "grpc-unary", 1, 40), _run("service", "grpc-unary", 16, 90), _run("tutorial", "tutorial-file", 4, 10),
        _run("in-process", "pipeline", 1, 50), _run("in-process", "pipeline", 16, 100), _run("in-process", "model-b8", 1, 120),
    ])
    assert [r.ratio_to_pipeline for r in runs] == [pytest.approx(0.8), pytest.approx(0.9), None, None, None, None]


def test_closed_loop_stops_at_max_requests_and_counts_errors() -> None:
    """N workers, at most max_requests requests; failures are counted by code, never stop the run."""
    in_flight, most = 0, 0

    async def send(n: int) -> Sent:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        if n % 5 == 0:
            raise ClassifyError("RESOURCE_EXHAUSTED", "shed", retry_after=1.0)
        return Sent(2, ("INVALID_ARGUMENT",) if n % 7 == 0 else ())

    run = asyncio.run(closed_loop(send, Limits(3, 30.0, 40), target="t", mode="m", bytes_per_image=10.0))
    assert most == 3
    assert run.requests + run.errors["RESOURCE_EXHAUSTED"] == 40
    assert run.errors["RESOURCE_EXHAUSTED"] == 8 and run.errors["INVALID_ARGUMENT"] == 4  # 7, 14, 21, 28 (35 was shed)
    assert run.images == 2 * run.requests


def test_closed_loop_stops_at_the_duration() -> None:
    """A run ends at its duration however many requests remain; warm-up is not measured."""

    async def send(n: int) -> Sent:
        await asyncio.sleep(0.01)
        return Sent(1)

    started = time.perf_counter()
    run = asyncio.run(closed_loop(send, Limits(2, 0.3, 10**9, warmup_s=0.2), target="t", mode="m", bytes_per_image=None))
    assert 0.3 <= run.elapsed_s < 0.6 and time.perf_counter() - started >= 0.5
    assert 10 <= run.requests <= 62


def test_only_loopback_targets_are_loaded() -> None:
    """The load generator refuses any address that is not this machine."""
    for target in ("127.0.0.1:50051", "http://localhost:8000", "[::1]:50051", "https://127.0.0.2:1"):
        require_loopback(target)
    for target in ("192.0.2.10:50051", "http://198.51.100.7:8000"):
        with pytest.raises(ValueError, match="loopback"):
            require_loopback(target)


def test_plan_runs_tutorial_modes_against_both_servers() -> None:
    """Our modes hit ours; tutorial-* modes hit ours and the baseline when one is given."""
    args = Namespace(modes="grpc-unary,tutorial-file,tutorial-grpc", grpc="127.0.0.1:1", http="http://127.0.0.1:2",
                     tutorial_grpc="127.0.0.1:3", tutorial_http=None)
    assert [(p.target, p.mode, p.address) for p in plan(args)] == [
        ("service", "grpc-unary", "127.0.0.1:1"),
        ("service", "tutorial-file", "http://127.0.0.1:2"),
        ("service", "tutorial-grpc", "127.0.0.1:1"),
        ("tutorial", "tutorial-grpc", "127.0.0.1:3"),
    ]
    with pytest.raises(ValueError, match="unknown mode"):
        plan(Namespace(**{**vars(args), "modes": "grpc-unary,carrier-pigeon"}))


def test_report_is_a_markdown_table_of_every_run() -> None:
    """One row per run with the documented columns; missing values show as a dash."""
    runs = [
        _run("service", "grpc-unary", 16, 90, ratio_to_pipeline=0.9, errors={"RESOURCE_EXHAUSTED": 3}),
        _run("in-process", "model-b1", 1, 45, bytes_per_image=None),
    ]
    report = render_markdown({"name": "demo", "notes": ["WARNING: busy"]}, runs, ["throughput.png"])
    lines = report.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| target |"))
    assert lines[header].split("|")[1:-1] == [
        " target ", " mode ", " concurrency ", " img/s ", " p50 ms ", " p90 ms ", " p99 ms ", " bytes/img ",
        " client CPU s/img ", " errors ", " × pipeline ",
    ]
    assert lines[header + 2] == "| service | grpc-unary | 16 | 90.0 | 15.0 | 19.0 | 19.9 | 1,000 | 0.0056 | RESOURCE_EXHAUSTED 3 | 0.90 |"
    assert lines[header + 3].startswith("| in-process | model-b1 | 1 | 45.0 |") and lines[header + 3].endswith("| — | 0.0111 | 0 | — |")
    assert "# classify bench — demo" in report and "- WARNING: busy" in report and "![throughput](throughput.png)" in report


def test_reference_runs_in_process(weights: Path) -> None:
    """The model-only and pipeline references load the server's model and classify real photos."""
    from service.settings import Settings
    from service.tools.bench import reference
    from service.tools.bench.images import benchmark_images

    settings = Settings(weights=weights, batch_max_size=2, torch_threads=1, decode_workers=1)
    images = tuple(benchmark_images().values())
    assert len(images) == 6 and all(image[:2] == b"\xff\xd8" for image in images)
    engine = reference.build_engine(settings)
    try:
        model = reference.load_models(settings)[0]
        only = reference.model_only(model, images, 2, Limits(1, 5.0, 2), settings)
        piped = asyncio.run(reference.pipeline(engine, images, Limits(2, 5.0, 4), 5, ""))
    finally:
        engine.close()
    assert (only.mode, only.requests, only.images) == ("model-b2", 2, 4)
    assert (piped.target, piped.mode, piped.requests, piped.images, piped.errors) == ("in-process", "pipeline", 4, 4, {})


def test_a_tiny_real_run_writes_results_report_and_plots(server: ServerProcess, tmp_path: Path) -> None:
    """2 s, concurrency 2, grpc-unary and http-json against a real server: results.json, report.md, PNGs."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "bench", "--grpc", server.grpc_address, "--http", server.http_url,
         "--modes", "grpc-unary,http-json", "--concurrency", "2", "--duration", "2", "--max-requests", "200",
         "--warmup", "0", "--out", str(out), "--no-reference"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((out / "results.json").read_text())
    runs = [RunResult.from_json(r) for r in document["runs"]]
    assert [(r.target, r.mode, r.concurrency) for r in runs] == [("service", "grpc-unary", 2), ("service", "http-json", 2)]
    for run in runs:
        assert run.images > 0 and run.errors == {} and run.p99_ms is not None and run.p99_ms >= run.p50_ms  # type: ignore[operator]
        assert run.bytes_per_image is not None and run.bytes_per_image > 20_000 and run.client_cpu_s > 0
    assert runs[1].bytes_per_image > runs[0].bytes_per_image  # type: ignore[operator]  # base64 in JSON
    assert document["meta"]["served"]["defaultModel"] == "resnet18"
    report = (out / "report.md").read_text()
    assert "| service | grpc-unary | 2 |" in report and "| service | http-json | 2 |" in report
    for plot in ("throughput.png", "p99.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
