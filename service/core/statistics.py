"""Cumulative per-model inference statistics: counts and durations of each stage.

These are the numbers the Open Inference Protocol's ModelStatistics reports
(and perf_analyzer reads to split server time into queue and compute). Every
image is one inference request here, whichever API it came through: a
classify.v1 call, one element of a batch call or of an OIP request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Duration:
    """How many events, and their total time in nanoseconds."""

    count: int = 0
    ns: int = 0

    def plus(self, seconds: float, count: int = 1) -> Duration:
        return Duration(self.count + count, self.ns + int(seconds * 1e9))


@dataclass
class StageTimes:
    """Where one image's time went, in seconds; filled in as it moves through the engine."""

    compute_input: float = 0.0
    queue: float = 0.0
    compute_infer: float = 0.0  # its whole batch's model time
    compute_output: float = 0.0


@dataclass(frozen=True)
class Statistics:
    """A snapshot of one model's statistics since start-up."""

    inference_count: int = 0  # images inferred
    execution_count: int = 0  # model executions (batches)
    last_inference_ms: int = 0  # milliseconds since the epoch; 0 = never
    success: Duration = Duration()  # admitted images answered, arrival to answer
    fail: Duration = Duration()  # admitted images that ended in an error
    queue: Duration = Duration()  # waiting for a place in a batch
    compute_input: Duration = Duration()  # decoding and preprocessing
    compute_infer: Duration = Duration()  # the model: each image counts its batch's time
    compute_output: Duration = Duration()  # picking the answer from the probability row
    batches: dict[int, Duration] = field(default_factory=dict)  # batch size -> model time of its batches


class StatisticsRecorder:
    """Thread-safe accumulation: decode threads, the batcher and the event loop all record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = Statistics()

    def reset(self) -> None:
        """Forget everything so far (the warm-up batches are nobody's requests)."""
        with self._lock:
            self._stats = Statistics()

    def snapshot(self) -> Statistics:
        with self._lock:
            return replace(self._stats, batches=dict(self._stats.batches))

    def finished(self, seconds: float, times: StageTimes | None) -> None:
        """One image is answered (``times`` says where its ``seconds`` went) or failed (``times`` is None)."""
        with self._lock:
            s = self._stats
            if times is None:
                self._stats = replace(s, fail=s.fail.plus(seconds))
                return
            self._stats = replace(
                s,
                success=s.success.plus(seconds),
                compute_input=s.compute_input.plus(times.compute_input),
                queue=s.queue.plus(times.queue),
                compute_infer=s.compute_infer.plus(times.compute_infer),
                compute_output=s.compute_output.plus(times.compute_output),
            )

    def execution(self, size: int, seconds: float) -> None:
        """The model ran a batch of ``size`` images in ``seconds``."""
        with self._lock:
            s = self._stats
            batches = dict(s.batches)
            batches[size] = batches.get(size, Duration()).plus(seconds)
            self._stats = replace(
                s,
                inference_count=s.inference_count + size,
                execution_count=s.execution_count + 1,
                last_inference_ms=int(time.time() * 1000),
                batches=batches,
            )
