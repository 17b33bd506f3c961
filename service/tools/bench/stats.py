"""Percentiles and the summary of one run: pure functions, no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation between ranks (NumPy's default); None if empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100; got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class RunResult:
    """One measured run: a mode against a target at one concurrency (or an in-process reference)."""

    target: str  # "service", "tutorial" or "in-process"
    mode: str
    concurrency: int
    requests: int  # answered without a transport-level error
    images: int  # classified successfully
    errors: dict[str, int]  # by canonical code name (per image for batch modes)
    elapsed_s: float
    throughput: float  # images per second
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    bytes_per_image: float | None  # request payload on the wire, framing included, headers not
    client_cpu_s: float
    client_cpu_per_image_s: float | None
    ratio_to_pipeline: float | None = None  # throughput / in-process pipeline at the same concurrency
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.target, self.mode, self.concurrency)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResult:
        return cls(**data)


def summarize(
    *,
    target: str,
    mode: str,
    concurrency: int,
    latencies_s: Sequence[float],
    images: int,
    errors: Mapping[str, int],
    elapsed_s: float,
    cpu_s: float,
    bytes_per_image: float | None,
    notes: Mapping[str, Any] | None = None,
) -> RunResult:
    """Aggregate one run's raw samples; latencies are per request (a whole batch for batch modes)."""

    def ms(value: float | None) -> float | None:
        return None if value is None else value * 1000.0

    return RunResult(
        target=target,
        mode=mode,
        concurrency=concurrency,
        requests=len(latencies_s),
        images=images,
        errors=dict(sorted(errors.items())),
        elapsed_s=elapsed_s,
        throughput=images / elapsed_s if elapsed_s > 0 else 0.0,
        p50_ms=ms(percentile(latencies_s, 50)),
        p90_ms=ms(percentile(latencies_s, 90)),
        p99_ms=ms(percentile(latencies_s, 99)),
        mean_ms=ms(sum(latencies_s) / len(latencies_s)) if latencies_s else None,
        bytes_per_image=bytes_per_image,
        client_cpu_s=cpu_s,
        client_cpu_per_image_s=cpu_s / images if images else None,
        notes=dict(notes or {}),
    )


def with_pipeline_ratios(runs: Sequence[RunResult], pipeline_mode: str = "pipeline") -> list[RunResult]:
    """Each remote run's throughput over the in-process pipeline's at the same concurrency (None where unmeasured)."""
    pipeline = {r.concurrency: r.throughput for r in runs if r.target == "in-process" and r.mode == pipeline_mode}
    return [
        replace(run, ratio_to_pipeline=run.throughput / pipeline[run.concurrency])
        if run.target != "in-process" and pipeline.get(run.concurrency)
        else run
        for run in runs
    ]
