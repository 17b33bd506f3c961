"""The engine: the one object both transports call to classify images."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from service.core.batching import Batcher, BatchingConfig
from service.core.errors import (
    INTERNAL_MESSAGE,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    Overloaded,
    ServiceError,
    Unavailable,
)
from service.core.images import ImageLimits, decode_image
from service.core.models import LoadedModel, ModelInfo
from service.core.statistics import StageTimes, Statistics, StatisticsRecorder
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
    """The class probabilities of several images, one row each, and the model that produced them."""

    probabilities: np.ndarray  # (images, classes) float32
    model: ModelInfo


@dataclass(frozen=True)
class ClassifyItem:
    """One image of a batch call, with its own options."""

    image: bytes
    top_k: int = 0
    model: str = ""


class Engine:
    """Decodes on a thread pool, batches per model, runs inference off the event loop."""

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
    ) -> None:
        if not models:
            raise ValueError("an engine needs at least one model")
        self._models = {model.info.name: model for model in models}
        self._default = models[0].info.name
        self._limits = limits
        self._jpeg_draft = jpeg_draft
        self._batching = batching
        self._max_batch_images = max_batch_images
        # Several models share one inference thread: each thread that runs torch
        # holds its own OpenMP team, and a second team throttles both (and two
        # models at once would oversubscribe the cores anyway); see core/threads.py.
        self._shared_inference = (
            ThreadPoolExecutor(1, thread_name_prefix="inference") if len(self._models) > 1 else None
        )
        self._statistics = {name: StatisticsRecorder() for name in self._models}
        self._batchers = {
            name: Batcher(self._inference_function(model), batching, name, self._statistics[name])
            for name, model in self._models.items()
        }
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
    def max_batch_images(self) -> int:
        """Most images one call may carry (batch calls, OIP requests)."""
        return self._max_batch_images

    @property
    def batching(self) -> BatchingConfig:
        return self._batching

    @property
    def default_model(self) -> str:
        return self._default

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        return tuple(model.info for model in self._models.values())

    def model(self, name: str) -> ModelInfo:
        """The metadata of the served model ``name``."""
        if not name:
            raise InvalidArgument("a model name is required")
        return self._resolve(name).info

    def warm_up(self) -> None:
        """Run each model once at batch size 1 and at the largest batch size (blocking)."""
        for name, model in self._models.items():
            size = model.preprocessing.crop_size
            blank = np.zeros((3, size, size), dtype=np.float32)
            started = time.perf_counter()
            self._batchers[name].submit(blank).result()
            futures = [self._batchers[name].submit(blank) for _ in range(self._batching.max_batch_size)]
            for future in futures:
                future.result()
            logger.info("warmed up model %s in %.2f s", name, time.perf_counter() - started)
            self._statistics[name].reset()
            MODEL_READY.labels(name).set(1)
        self._ready = True

    def statistics(self, name: str) -> Statistics:
        """Cumulative inference statistics of the served model ``name``."""
        return self._statistics[self._resolve(name).info.name].snapshot()

    async def classify(
        self, image: bytes, top_k: int = 0, model: str = "", timeout: float | None = None
    ) -> Classification:
        """Classify one encoded image; ``timeout`` covers decoding, queueing and inference."""
        loaded = self._serving(model)
        k = _checked_top_k(top_k, loaded.info.num_classes)
        return await self._admitted(image, loaded, timeout, lambda row: _top_k(row, k, loaded.info))

    async def infer(self, images: Sequence[bytes], model: str = "", timeout: float | None = None) -> Inference:
        """The class probabilities of each image, all by one model; any failing image fails the call."""
        loaded = self._serving(model)
        if not images:
            raise InvalidArgument("a request needs at least one image")
        if len(images) > self._max_batch_images:
            raise InvalidArgument(f"a request holds at most {self._max_batch_images} images; got {len(images)}")
        tasks = [asyncio.ensure_future(self._admitted(image, loaded, timeout, _as_float32)) for image in images]
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
        return Inference(np.stack([task.result() for task in tasks]), loaded.info)

    def _serving(self, model: str) -> LoadedModel:
        if self._closed:
            raise Unavailable("server is shutting down")
        return self._resolve(model)

    async def _admitted(
        self, image: bytes, loaded: LoadedModel, timeout: float | None, answer: Callable[[np.ndarray], _Answer]
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
        ok = False
        try:
            if timeout is None:
                row = await self._probabilities(image, loaded, None, times)
            else:
                try:
                    async with asyncio.timeout(timeout):
                        row = await self._probabilities(image, loaded, time.monotonic() + timeout, times)
                except TimeoutError:
                    raise DeadlineExceeded(f"deadline of {timeout:.3f} s exceeded") from None
            answered = time.perf_counter()
            result = answer(row)
            times.compute_output = time.perf_counter() - answered
            ok = True
            return result
        finally:
            self._admit(-1)
            self._statistics[loaded.info.name].finished(time.perf_counter() - started, times if ok else None)

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
            *(self.classify(item.image, item.top_k, item.model, timeout) for item in items),
            return_exceptions=True,
        )
        return [_as_outcome(outcome) for outcome in outcomes]

    def close(self) -> None:
        """Stop taking requests, finish queued inference, release the threads."""
        self._closed = True
        for name in self._models:
            MODEL_READY.labels(name).set(0)
        for batcher in self._batchers.values():
            batcher.close()
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

    def _resolve(self, name: str) -> LoadedModel:
        if not name:
            return self._models[self._default]
        try:
            return self._models[name]
        except KeyError:
            raise NotFound(
                f"model {name!r} is not served; served models: {', '.join(self._models)}"
            ) from None

    async def _probabilities(
        self, image: bytes, loaded: LoadedModel, deadline: float | None, times: StageTimes
    ) -> np.ndarray:
        loop = asyncio.get_running_loop()
        batcher = self._batchers[loaded.info.name]
        with batcher.preparing():
            inputs, times.compute_input = await loop.run_in_executor(self._decode_pool, self._prepare, image, loaded)
        future = batcher.submit(inputs, deadline, times)
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
            for info in self._engine.models:
                MODEL_READY.labels(info.name).set(0)

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
