"""The engine: the one object both transports call to classify images."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from service.core.batching import Batcher, BatchingConfig
from service.core.images import ImageLimits, decode_image
from service.core.malloc_tuning import return_freed_memory
from service.core.models import LoadedModel, ModelInfo
from service.core.registry import ModelRegistry, ServedVersion
from service.core.statistics import StageTimes, Statistics, StatisticsRecorder
from service.core.tracing import CoreTracer, ImageTrace, model_attributes
from service.errors import (
    INTERNAL_MESSAGE,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    Overloaded,
    ServiceError,
    Unavailable,
)
from service.metrics import IN_FLIGHT, MODEL_READY, PREPROCESS_SECONDS, SHED

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
_Answer = TypeVar("_Answer")


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    class_index: int


@dataclass(frozen=True)
class Classification:
    """The top-K classes of one image and the model that produced them."""

    predictions: tuple[Prediction, ...]
    model: str
    model_version: str


@dataclass(frozen=True)
class Inference:
    """The class probabilities of several images, one row each, and the model version that produced them."""

    probabilities: np.ndarray  # (images, classes) float32
    model: ModelInfo


@dataclass(frozen=True)
class ClassifyItem:
    """One image of a batch call, with its own options."""

    image: bytes
    top_k: int = 0
    model: str = ""
    model_version: str = ""


class Engine:
    """Decodes on a thread pool, batches per model version, runs inference off the event loop.

    The versions live in a :class:`ModelRegistry`: the models given at start-up,
    and (``dynamic``) those a :class:`service.core.control.ModelControl` loads
    and unloads while the engine serves.
    """

    def __init__(
        self,
        models: Sequence[LoadedModel],
        *,
        limits: ImageLimits,
        batching: BatchingConfig,
        decode_workers: int,
        max_batch_images: int,
        max_in_flight: int,
        jpeg_draft: bool = True,
        dynamic: bool = False,
        tracer: CoreTracer | None = None,
    ) -> None:
        if not models and not dynamic:
            raise ValueError("an engine needs at least one model")
        self._tracer = tracer  # None: tracing is off, and no image does any tracing work
        self._default = models[0].info.name if models else ""
        self._limits = limits
        self._jpeg_draft = jpeg_draft
        self._batching = batching
        self._max_batch_images = max_batch_images
        # Several models share one inference thread: each thread that runs torch
        # holds its own OpenMP team, and a second team throttles both (and two
        # models at once would oversubscribe the cores anyway); see core/threads.py.
        # Models that come and go (``dynamic``) always use it, so a version loaded
        # later never runs on a thread of its own.
        self._shared_inference = (
            ThreadPoolExecutor(1, thread_name_prefix="inference") if len(models) > 1 or dynamic else None
        )
        self._registry = ModelRegistry(self._release_version)
        self._fixed: list[ServedVersion] = []
        for model in models:
            served = self._served_version(model)
            self._registry.publish(model.info.name, model.info.version, served, in_repository=False)
            self._fixed.append(served)
        self._decode_pool = ThreadPoolExecutor(decode_workers, thread_name_prefix="decode")
        self._ready = False
        self._closed = False
        # Admission control: images decoding, queued or in inference. Counted
        # on the event loop only, so no lock is needed.
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        """True once every model has run a warm-up batch and until shutdown begins."""
        return self._ready and not self._closed

    @property
    def default_model(self) -> str:
        """The model of requests naming none: the first given at start-up, else the first served by name."""
        if self._default:
            return self._default
        return next((name for name in self._registry.names() if self._registry.current(name)), "")

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        """The current version of every model that has a ready one."""
        current = (self._registry.current(name) for name in self._registry.names())
        return tuple(info for info in current if info is not None)

    def model(self, name: str) -> ModelInfo:
        """The metadata of the current version of the served model ``name``."""
        if not name:
            raise InvalidArgument("a model name is required")
        info = self._registry.current(name)
        if info is None:
            with self.lease(name):  # raises the registry's NOT_FOUND / UNAVAILABLE
                pass
            raise NotFound(f"model {name!r} is not served")  # unreachable unless it changed meanwhile
        return info

    @contextmanager
    def lease(self, model: str = "", version: str = "") -> Iterator[ServedVersion]:
        """Hold the version that answers a request for ``model`` (empty: the default) until the block ends.

        Unpinned (``version`` empty) that is the model's current version; a
        version swap or unload never takes it away while the block runs.
        """
        name = model or self.default_model
        if not name:
            raise NotFound("no model is served")
        with self._registry.lease(name, version) as served:
            yield served

    def warm_up(self) -> None:
        """Run each model given at start-up once at batch size 1 and at the largest batch size (blocking)."""
        for served in self._fixed:
            self._warm_up(served)
        self._ready = True

    def _warm_up(self, served: ServedVersion) -> None:
        size = served.model.preprocessing.crop_size
        blank = np.zeros((3, size, size), dtype=np.float32)
        started = time.perf_counter()
        served.batcher.submit(blank).result()
        futures = [served.batcher.submit(blank) for _ in range(self._batching.max_batch_size)]
        for future in futures:
            future.result()
        logger.info("warmed up model %s version %s in %.2f s", served.info.name, served.info.version, time.perf_counter() - started)
        served.statistics.reset()  # the warm-up batches are nobody's requests
        MODEL_READY.labels(served.info.name).set(1)

    def build_version(self, model: LoadedModel) -> ServedVersion:
        """A batcher for a newly loaded version, warmed up on the shared inference thread (blocking).

        Call it from the thread that loaded ``model`` (one that exits,
        core/threads.py): serving goes on meanwhile, sharing the inference thread.
        """
        if self._shared_inference is None:
            raise RuntimeError("versions can be added only to an engine built with dynamic=True")
        served = self._served_version(model)
        try:
            self._warm_up(served)
        except BaseException:
            served.batcher.close()
            raise
        return served

    def _served_version(self, model: LoadedModel) -> ServedVersion:
        statistics = StatisticsRecorder()
        batcher = Batcher(
            self._inference_function(model), self._batching, model.info.name, statistics,
            tracer=self._tracer, trace_attributes=model_attributes(model.info),
        )
        return ServedVersion(model, batcher, statistics)

    @property
    def max_batch_images(self) -> int:
        """Most images one call may carry (batch calls, OIP requests)."""
        return self._max_batch_images

    @property
    def batching(self) -> BatchingConfig:
        return self._batching

    def statistics(self) -> list[tuple[ModelInfo, Statistics]]:
        """Cumulative inference statistics of every loaded version."""
        return [(served.info, served.statistics.snapshot()) for served in self._registry.served()]

    def mark_ready(self) -> None:
        """Report ready once start-up loading is over (dynamic engines with no model given at start-up)."""
        self._ready = True

    async def classify(
        self, image: bytes, top_k: int = 0, model: str = "", timeout: float | None = None, model_version: str = ""
    ) -> Classification:
        """Classify one encoded image; ``timeout`` covers decoding, queueing and inference."""
        if self._closed:
            raise Unavailable("server is shutting down")
        # The lease is taken at admission and held until the answer is computed:
        # the version that admitted the request is the one that answers it.
        with self.lease(model, model_version) as served:
            k = _checked_top_k(top_k, served.info.num_classes)
            return await self._admitted(image, served, timeout, lambda row: _top_k(row, k, served.info))

    async def infer(
        self, images: Sequence[bytes], model: str = "", timeout: float | None = None, model_version: str = ""
    ) -> Inference:
        """The class probabilities of each image, all by one model version; any failing image fails the call."""
        if self._closed:
            raise Unavailable("server is shutting down")
        if not images:
            raise InvalidArgument("a request needs at least one image")
        if len(images) > self._max_batch_images:
            raise InvalidArgument(f"a request holds at most {self._max_batch_images} images; got {len(images)}")
        with self.lease(model, model_version) as served:
            tasks = [asyncio.ensure_future(self._admitted(image, served, timeout, _as_float32)) for image in images]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                # One bad image fails the request: the others stop taking decode and batch slots.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    raise _as_service_error(task.exception())
            return Inference(np.stack([task.result() for task in tasks]), served.info)

    async def _admitted(
        self, image: bytes, served: ServedVersion, timeout: float | None, answer: Callable[[np.ndarray], _Answer]
    ) -> _Answer:
        """One image through admission control, decoding, a batch and ``answer``; ``timeout`` covers all of it.

        Its statistics are recorded in one step when it is done, so a reader
        never sees an image counted in one stage and not yet in the next.
        """
        if self._in_flight >= self._max_in_flight:
            SHED.inc()
            raise Overloaded(
                f"server at capacity ({self._max_in_flight} images in flight); retry later",
                retry_after=1.0,
            )
        self._admit(+1)
        started, times = time.perf_counter(), StageTimes()
        trace = self._tracer.image(served.info) if self._tracer is not None else None
        ok = False
        try:
            if timeout is None:
                row = await self._probabilities(image, served, None, times, trace)
            else:
                try:
                    async with asyncio.timeout(timeout):
                        row = await self._probabilities(image, served, time.monotonic() + timeout, times, trace)
                except TimeoutError:
                    raise DeadlineExceeded(f"deadline of {timeout:.3f} s exceeded") from None
            answered = time.perf_counter()
            result = answer(row)
            times.compute_output = time.perf_counter() - answered
            ok = True
            return result
        except BaseException as error:
            if trace is not None:
                trace.failed(error)
            raise
        finally:
            if trace is not None:
                trace.end()
            self._admit(-1)
            served.statistics.finished(time.perf_counter() - started, times if ok else None)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drained(self, timeout: float) -> bool:
        """Wait until no image is in flight; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _admit(self, delta: int) -> None:
        self._in_flight += delta
        IN_FLIGHT.set(self._in_flight)
        if self._in_flight == 0:
            self._idle.set()
        else:
            self._idle.clear()

    async def classify_batch(
        self, items: Sequence[ClassifyItem], timeout: float | None = None
    ) -> list[Classification | ServiceError]:
        """Classify several images; each gets its own result or error."""
        if not items:
            raise InvalidArgument("a batch needs at least one image")
        if len(items) > self._max_batch_images:
            raise InvalidArgument(
                f"a batch holds at most {self._max_batch_images} images; got {len(items)}"
            )
        outcomes = await asyncio.gather(
            *(self.classify(item.image, item.top_k, item.model, timeout, item.model_version) for item in items),
            return_exceptions=True,
        )
        return [_as_outcome(outcome) for outcome in outcomes]

    def close(self) -> None:
        """Stop taking requests, finish queued inference, release the threads."""
        self._closed = True
        for name in self._registry.names():
            MODEL_READY.labels(name).set(0)
        for served in self._registry.served():
            served.batcher.close()
        if self._shared_inference is not None:
            self._shared_inference.shutdown(wait=True)
        self._decode_pool.shutdown(wait=True, cancel_futures=True)

    def _inference_function(self, model: LoadedModel) -> Callable[[np.ndarray], np.ndarray]:
        """What a model's batcher calls: the backend itself, or a hop to the shared inference thread."""
        predict = model.backend.predict_proba
        shared = self._shared_inference
        if shared is None:
            return predict  # one model: its batcher thread is the inference thread
        return lambda batch: shared.submit(predict, batch).result()

    def _release_version(self, served: ServedVersion) -> None:
        """Stop a released version's batcher and give its memory back, off the caller's thread."""
        holder = [served]

        def release() -> None:
            holder.pop().batcher.close()
            gc.collect()  # the module's tensors go now, not at some later collection
            return_freed_memory()

        threading.Thread(target=release, name="release-model", daemon=True).start()

    async def _probabilities(
        self, image: bytes, served: ServedVersion, deadline: float | None, times: StageTimes, trace: ImageTrace | None
    ) -> np.ndarray:
        loop = asyncio.get_running_loop()
        batcher, loaded = served.batcher, served.model
        with batcher.preparing():
            inputs, times.compute_input = await loop.run_in_executor(self._decode_pool, self._prepare, image, loaded)
        if trace is not None:
            trace.queued(times.compute_input)
        future = batcher.submit(inputs, deadline, times, trace)
        return await asyncio.wrap_future(future)

    def _prepare(self, image: bytes, loaded: LoadedModel) -> tuple[np.ndarray, float]:
        """The model input of one encoded image, and the seconds it took."""
        started = time.perf_counter()
        # Large JPEGs decode at a reduced DCT scale that keeps at least twice the
        # resize size (measured: 99.6 % top-1 agreement, 3.6x faster; README).
        draft = 2 * loaded.preprocessing.resize_size if self._jpeg_draft else None
        inputs = loaded.preprocessing(decode_image(image, self._limits, draft))
        elapsed = time.perf_counter() - started
        PREPROCESS_SECONDS.labels(loaded.info.name).observe(elapsed)
        return inputs, elapsed


def _as_float32(row: np.ndarray) -> np.ndarray:
    return row.astype(np.float32, copy=False)


def _checked_top_k(top_k: int, num_classes: int) -> int:
    if top_k < 0 or top_k > num_classes:
        raise InvalidArgument(
            f"top_k must be between 0 and {num_classes} (0 means {DEFAULT_TOP_K}); got {top_k}"
        )
    return top_k or min(DEFAULT_TOP_K, num_classes)


def _top_k(probabilities: np.ndarray, k: int, info: ModelInfo) -> Classification:
    # argpartition then a sort of k items: O(classes + k log k).
    indices = np.argpartition(-probabilities, k - 1)[:k]
    indices = indices[np.argsort(-probabilities[indices], kind="stable")]
    return Classification(
        predictions=tuple(
            Prediction(info.labels[i], float(probabilities[i]), int(i)) for i in indices
        ),
        model=info.name,
        model_version=info.version,
    )


def _as_outcome(outcome: object) -> Classification | ServiceError:
    if isinstance(outcome, Classification):
        return outcome
    return _as_service_error(outcome)


def _as_service_error(error: object) -> ServiceError:
    """ServiceErrors pass; anything else is logged with its traceback and becomes a generic INTERNAL."""
    if isinstance(error, ServiceError):
        return error
    logger.error("unexpected error in a batch item", exc_info=error)  # type: ignore[arg-type]
    return Internal(INTERNAL_MESSAGE)


class EngineRef:
    """Where transports find the engine: unavailable until it is loaded and warm."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._draining = False

    def set(self, engine: Engine) -> None:
        self._engine = engine

    def drain(self) -> None:
        """Refuse new calls (UNAVAILABLE) and report not ready; calls in flight still finish."""
        self._draining = True
        if self._engine is not None:
            for name in self._engine.registry.names():
                MODEL_READY.labels(name).set(0)

    @property
    def ready(self) -> bool:
        return self._engine is not None and self._engine.ready and not self._draining

    def get(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise Unavailable("the model is still loading; retry shortly")
        if self._draining:
            raise Unavailable("server is shutting down; retry on another replica")
        return engine
