"""Model lifecycle: the served versions and their batchers, warmed up before they serve, released after.

The models given at start-up are published and warmed up once; versions
loaded while serving (service/core/control.py) get a batcher and a warm-up
here before the registry makes them current; a retired version's batcher is
stopped and its memory returned once its last request is done.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from service.core.batching import Batcher, BatchingConfig
from service.core.malloc_tuning import return_freed_memory
from service.core.models import LoadedModel, ModelInfo
from service.core.registry import ModelRegistry, ServedVersion
from service.core.statistics import Statistics, StatisticsRecorder
from service.core.tracing import CoreTracer, model_attributes
from service.errors import InvalidArgument, NotFound
from service.metrics import MODEL_READY

logger = logging.getLogger(__name__)


class ModelLifecycle:
    """The registry of served versions, the batcher of each, and the inference thread they share.

    ``dynamic``: versions come and go while serving (a model repository), so
    even one model runs on the shared inference thread.
    """

    def __init__(
        self, models: Sequence[LoadedModel], batching: BatchingConfig, *, dynamic: bool = False,
        tracer: CoreTracer | None = None,
    ) -> None:
        if not models and not dynamic:
            raise ValueError("an engine needs at least one model")
        self._tracer = tracer  # each batcher makes one span per batch with it (None: tracing is off)
        self._default = models[0].info.name if models else ""
        self.batching = batching
        # Several models share one inference thread: each thread that runs torch
        # holds its own OpenMP team, and a second team throttles both (and two
        # models at once would oversubscribe the cores anyway); see core/threads.py.
        # Models that come and go (``dynamic``) always use it, so a version loaded
        # later never runs on a thread of its own.
        self._shared_inference = (
            ThreadPoolExecutor(1, thread_name_prefix="inference") if len(models) > 1 or dynamic else None
        )
        self.registry = ModelRegistry(self._release_version)
        self._fixed: list[ServedVersion] = []
        for model in models:
            served = self._served_version(model)
            self.registry.publish(model.info.name, model.info.version, served, in_repository=False)
            self._fixed.append(served)

    @property
    def default_model(self) -> str:
        """The model of requests naming none: the first given at start-up, else the first served by name."""
        if self._default:
            return self._default
        return next((name for name in self.registry.names() if self.registry.current(name)), "")

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        """The current version of every model that has a ready one."""
        current = (self.registry.current(name) for name in self.registry.names())
        return tuple(info for info in current if info is not None)

    def model(self, name: str) -> ModelInfo:
        """The metadata of the current version of the served model ``name``."""
        if not name:
            raise InvalidArgument("a model name is required")
        info = self.registry.current(name)
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
        with self.registry.lease(name, version) as served:
            yield served

    def statistics(self) -> list[tuple[ModelInfo, Statistics]]:
        """Cumulative inference statistics of every loaded version."""
        return [(served.info, served.statistics.snapshot()) for served in self.registry.served()]

    def warm_up(self) -> None:
        """Run each model given at start-up once at batch size 1 and at the largest batch size (blocking)."""
        for served in self._fixed:
            self._warm_up(served)
        # Loading leaves the graph's source and the optimizer's copies freed in
        # the heap (about 120 MiB for ResNet18 on ONNX Runtime): give them back.
        return_freed_memory()

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
        return_freed_memory()  # as in warm_up
        return served

    def close(self) -> None:
        """Finish queued inference and stop every batcher and the inference thread."""
        for name in self.registry.names():
            MODEL_READY.labels(name).set(0)
        for served in self.registry.served():
            served.batcher.close()
        if self._shared_inference is not None:
            self._shared_inference.shutdown(wait=True)

    def _warm_up(self, served: ServedVersion) -> None:
        size = served.model.preprocessing.crop_size
        blank = np.zeros((3, size, size), dtype=np.float32)
        started = time.perf_counter()
        served.batcher.submit(blank).result()
        futures = [served.batcher.submit(blank) for _ in range(self.batching.max_batch_size)]
        for future in futures:
            future.result()
        logger.info("warmed up model %s version %s in %.2f s", served.info.name, served.info.version, time.perf_counter() - started)
        served.statistics.reset()  # the warm-up batches are nobody's requests
        MODEL_READY.labels(served.info.name).set(1)

    def _served_version(self, model: LoadedModel) -> ServedVersion:
        statistics = StatisticsRecorder()
        batcher = Batcher(
            self._inference_function(model), self.batching, model.info.name, statistics,
            tracer=self._tracer, trace_attributes=model_attributes(model.info),
        )
        return ServedVersion(model, batcher, statistics)

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
