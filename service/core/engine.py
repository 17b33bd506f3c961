"""The engine: the one object both transports call to classify images."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from service.core.admission import Admission
from service.core.batching import BatchingConfig
from service.core.images import ImageLimits, decode_image
from service.core.lifecycle import ModelLifecycle
from service.core.models import LoadedModel, ModelInfo
from service.core.registry import ModelRegistry, ServedVersion
from service.core.statistics import StageTimes, Statistics
from service.core.tracing import CoreTracer, ImageTrace
from service.errors import (
    INTERNAL_MESSAGE,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ServiceError,
    Unavailable,
)
from service.metrics import MODEL_READY, PREPROCESS_SECONDS

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
    """The inference path both transports call: admit, decode on a thread pool, batch, answer.

    Its parts, one job each: :class:`Admission` (the one limit on images held,
    and draining), :class:`ModelLifecycle` (the served versions, their batchers
    and warm-up; versions come and go through service/core/control.py when
    ``dynamic``), and this class (classify and infer, decoding, deadlines).
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
        self._tracer = tracer  # None: tracing is off, and no image does any tracing work
        self.lifecycle = ModelLifecycle(models, batching, dynamic=dynamic, tracer=tracer)
        self.admission = Admission(max_in_flight)
        self._limits = limits
        self._jpeg_draft = jpeg_draft
        self._max_batch_images = max_batch_images
        self._decode_pool = ThreadPoolExecutor(decode_workers, thread_name_prefix="decode")
        self._ready = False
        self._closed = False

    # -- what the API objects read: the lifecycle's, passed through ----------

    @property
    def registry(self) -> ModelRegistry:
        return self.lifecycle.registry

    @property
    def default_model(self) -> str:
        return self.lifecycle.default_model

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        return self.lifecycle.models

    @property
    def batching(self) -> BatchingConfig:
        return self.lifecycle.batching

    def model(self, name: str) -> ModelInfo:
        return self.lifecycle.model(name)

    def lease(self, model: str = "", version: str = "") -> AbstractContextManager[ServedVersion]:
        return self.lifecycle.lease(model, version)

    def statistics(self) -> list[tuple[ModelInfo, Statistics]]:
        return self.lifecycle.statistics()

    @property
    def in_flight(self) -> int:
        return self.admission.in_flight

    @property
    def admitted(self) -> int:
        return self.admission.admitted

    async def drained(self, timeout: float) -> bool:
        return await self.admission.drained(timeout)

    # -- start and stop ------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every model has run a warm-up batch and until shutdown begins."""
        return self._ready and not self._closed

    def warm_up(self) -> None:
        """Warm up the models given at start-up (blocking), then report ready."""
        self.lifecycle.warm_up()
        self._ready = True

    def close(self) -> None:
        """Stop taking requests, finish queued inference, release the threads."""
        self._closed = True
        self.lifecycle.close()
        self._decode_pool.shutdown(wait=True, cancel_futures=True)

    @property
    def max_batch_images(self) -> int:
        """Most images one call may carry (batch calls, OIP requests)."""
        return self._max_batch_images

    # -- inference -------------------------------------------------------------

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

    async def _admitted(
        self, image: bytes, served: ServedVersion, timeout: float | None, answer: Callable[[np.ndarray], _Answer]
    ) -> _Answer:
        """One image through admission, decoding, a batch and ``answer``; ``timeout`` covers all of it.

        Its statistics are recorded in one step when it is done, so a reader
        never sees an image counted in one stage and not yet in the next.
        """
        with self.admission.admit():
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
                served.statistics.finished(time.perf_counter() - started, times if ok else None)

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
        """Report not ready from now on (readiness, ``classify_model_ready``); calls are still served.

        A draining replica keeps answering whatever a load balancer still sends it
        until its health checks have noticed (service/roots/serve.py, the drain order):
        refusing those calls is what fails them behind a balancer.
        """
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
        return engine
