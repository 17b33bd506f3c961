"""Dynamic batching: single inputs grouped into batches, one batching thread per model."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.statistics import StageTimes, StatisticsRecorder
from service.core.tracing import CoreTracer, ImageTrace
from service.errors import INTERNAL_MESSAGE, DeadlineExceeded, Internal, Unavailable
from service.metrics import BATCH_RELEASES, BATCH_SIZE, CANCELLED, INFERENCE_SECONDS, QUEUE_DEPTH, QUEUE_WAIT_SECONDS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingConfig:
    """How inputs are grouped: at most ``max_batch_size``, waiting at most ``max_delay_s``.

    The wait only happens while other inputs for the model are still being
    prepared (decoded): nothing else could join the batch in time, since a new
    request needs decoding first, so a lone request runs at once.
    """

    max_batch_size: int = 8
    max_delay_s: float = 0.002


@dataclass
class _Job:
    inputs: np.ndarray
    future: Future[np.ndarray]
    deadline: float | None  # time.monotonic() value
    queued_at: float  # time.perf_counter() value at submit
    times: StageTimes | None  # where the caller wants this input's queue and model time
    trace: ImageTrace | None  # the input's spans, when its call is traced


class Batcher:
    """Feeds one backend from a bounded queue, on a single dedicated thread.

    One long-lived thread because PyTorch and OpenMP keep per-thread state:
    inference from a rotating pool of threads measured 15-25 % slower. With
    several models, ``run_batch`` hands the batch to the engine's one shared
    inference thread (service/core/threads.py says why).
    """

    def __init__(
        self,
        run_batch: Callable[[np.ndarray], np.ndarray],
        config: BatchingConfig,
        name: str,
        statistics: StatisticsRecorder | None = None,
        tracer: CoreTracer | None = None,
        trace_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._tracer = tracer
        self._trace_attributes = dict(trace_attributes or {})
        self._queue_wait = QUEUE_WAIT_SECONDS.labels(name)
        self._statistics = statistics
        self._config = config
        # Unbounded here: admission control (service/core/admission.py) is the one limit on what waits.
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._name = name
        self._preparing = 0  # inputs announced by preparing() and not yet submitted
        self._preparing_lock = threading.Lock()
        QUEUE_DEPTH.labels(name).set_function(self._queue.qsize)
        self._thread = threading.Thread(target=self._serve, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Inputs waiting for a batch (what classify_queue_depth reports)."""
        return self._queue.qsize()

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Mark one input as on its way (decoding), so a forming batch waits for it."""
        with self._preparing_lock:
            self._preparing += 1
        try:
            yield
        finally:
            with self._preparing_lock:
                self._preparing -= 1

    def submit(
        self,
        inputs: np.ndarray,
        deadline: float | None = None,
        times: StageTimes | None = None,
        trace: ImageTrace | None = None,
    ) -> Future[np.ndarray]:
        """Queue one (3, H, W) input; the future resolves to its probability row.

        ``times`` gets the input's queue and model time, and ``trace`` its batch, before the future resolves.
        """
        if self._closed:
            raise Unavailable("server is shutting down")
        job = _Job(
            inputs=inputs, future=Future(), deadline=deadline, queued_at=time.perf_counter(), times=times, trace=trace
        )
        self._queue.put_nowait(job)
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Finish queued work, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            flush_at = time.monotonic() + self._config.max_delay_s
            release = "full"  # why the batch stops growing: a label of classify_batch_releases_total
            while len(jobs) < self._config.max_batch_size:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    # Wait only for inputs already being decoded; nothing else can come in time.
                    wait = flush_at - time.monotonic()
                    if self._preparing == 0:
                        release = "none_decoding"
                        break
                    if wait <= 0:
                        release = "timer"
                        break
                    try:
                        job = self._queue.get(timeout=wait)
                    except queue.Empty:
                        release = "timer"
                        break
                if job is None:
                    stopping, release = True, "shutdown"
                    break
                jobs.append(job)
            self._run(jobs, release)

    def _run(self, jobs: list[_Job], release: str = "full") -> None:
        now = time.monotonic()
        live: list[_Job] = []
        for job in jobs:
            # A cancelled request (client gone) never takes a batch slot.
            if not job.future.set_running_or_notify_cancel():
                CANCELLED.labels(self._name).inc()
                continue
            if job.deadline is not None and now >= job.deadline:
                job.future.set_exception(DeadlineExceeded("deadline exceeded while queued"))
                continue
            live.append(job)
        if not live:
            return
        BATCH_SIZE.labels(self._name).observe(len(live))
        BATCH_RELEASES.labels(self._name, release).inc()
        span = None
        if self._tracer is not None:
            traced = [(position, job.trace) for position, job in enumerate(live) if job.trace is not None]
            if traced:
                span = self._tracer.batch(self._trace_attributes, traced, len(live), release)
        started = time.perf_counter()
        for job in live:
            self._queue_wait.observe(started - job.queued_at)
        try:
            probabilities = self._run_batch(np.stack([job.inputs for job in live]))
            elapsed = time.perf_counter() - started
            INFERENCE_SECONDS.labels(self._name).observe(elapsed)
        except Exception:
            logger.exception("inference failed for a batch of %d", len(live))
            if span is not None:
                self._tracer.batch_failed(span, INTERNAL_MESSAGE)  # type: ignore[union-attr]
                span.end()
            for job in live:
                job.future.set_exception(Internal(INTERNAL_MESSAGE))
            return
        if span is not None:
            span.end()
        if self._statistics is not None:
            self._statistics.execution(len(live), elapsed)
        for job, row in zip(live, probabilities, strict=True):
            if job.times is not None:
                job.times.queue = started - job.queued_at
                job.times.compute_infer = elapsed
            job.future.set_result(row)
