"""Where inference runs: one thread for every model the engine serves (OpenMP teams, core/threads.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from service.core.batching import BatchingConfig
from service.core.engine import Engine
from service.core.images import ImageLimits
from service.core.models import LoadedModel, ModelSpec, load_model


class RecordingThreads:
    """The real model's backend, noting which thread runs each batch."""

    def __init__(self, model: LoadedModel) -> None:
        self.inner = model.backend
        self.name, self.device, self.precision = self.inner.name, self.inner.device, self.inner.precision
        self.threads: set[int] = set()

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        self.threads.add(threading.get_ident())
        return self.inner.predict_proba(batch)


def _engine(models: list[LoadedModel]) -> Engine:
    return Engine(
        models, limits=ImageLimits(1 << 24, 50_000_000), batching=BatchingConfig(max_batch_size=2),
        decode_workers=1, max_batch_images=8, max_in_flight=16,
    )


@pytest.mark.parametrize("count", [1, 2])
def test_every_model_runs_on_one_inference_thread(count: int, weights: Path, photos: dict[str, bytes]) -> None:
    """With one model or two, all batches (warm-up and requests) run on a single thread, not the caller's."""
    model = load_model(ModelSpec("resnet18", "resnet18", weights))
    backends = [RecordingThreads(model) for _ in range(count)]
    models = [
        LoadedModel(dataclasses.replace(model.info, name=f"m{i}"), model.preprocessing, backend)
        for i, backend in enumerate(backends)
    ]
    engine = _engine(models)
    try:
        engine.warm_up()

        async def classify_on_each() -> list[int]:
            results = await asyncio.gather(*(engine.classify(photos["coffee.png"], 1, m.info.name) for m in models))
            return [r.predictions[0].class_index for r in results]

        top1 = asyncio.run(classify_on_each())
    finally:
        engine.close()
    assert len(set(top1)) == 1  # the same weights behind both names
    threads = set().union(*(b.threads for b in backends))
    assert len(threads) == 1 and threading.get_ident() not in threads
