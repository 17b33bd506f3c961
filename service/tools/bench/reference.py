"""In-process references: the same model, backend and batching as the server, with no transport at all.

"model only" times ``backend.predict_proba`` on preprocessed batches (at batch
1 and at the server's batch size), on models loaded with the same specs and
backend options as ``service.roots.serve.build_engine`` uses (keep :func:`load_models`
in step with it); "pipeline" drives the engine that ``build_engine`` itself
returns (decode, preprocess, dynamic batching, inference, top-K) with the same
closed loop as the remote runs. Imports torch: only loaded when references are asked for.

Torch work runs on threads that exit afterwards, as in the server, so that no
OpenMP team outlives it and slows the next one down (service/core/threads.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from service.core.engine import Engine
from service.core.images import ImageLimits, decode_image
from service.core.models import LoadedModel
from service.core.threads import call_on_exiting_thread
from service.settings import Settings
from service.tools.bench.loadgen import Limits, Sent, closed_loop
from service.tools.bench.stats import RunResult, summarize

TARGET = "in-process"


def load_models(settings: Settings) -> list[LoadedModel]:
    """The served models, loaded exactly as the server loads them (same specs, backend and threads)."""
    from service.roots.serve import load_models as server_models

    return call_on_exiting_thread(server_models, settings)


def build_engine(settings: Settings) -> Engine:
    """The server's own engine (service.roots.serve.build_engine): same models, batching, decoding and tuning, warmed up."""
    from service.roots.serve import build_engine as server_engine

    engine, _control = call_on_exiting_thread(server_engine, settings)
    return engine


def _limits(settings: Settings) -> ImageLimits:
    return ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)


def model_only(
    model: LoadedModel, images: Sequence[bytes], batch_size: int, limits: Limits, settings: Settings
) -> RunResult:
    """``predict_proba`` alone on batches of ``batch_size`` preprocessed photos, back to back."""
    return call_on_exiting_thread(_model_only, model, images, batch_size, limits, settings)


def _model_only(
    model: LoadedModel, images: Sequence[bytes], batch_size: int, limits: Limits, settings: Settings
) -> RunResult:
    inputs = [model.preprocessing(decode_image(image, _limits(settings))) for image in images]
    batch = np.stack([inputs[i % len(inputs)] for i in range(batch_size)])
    for _ in range(3):  # warm-up: the first calls of a shape allocate and pick kernels
        model.backend.predict_proba(batch)
    latencies: list[float] = []
    cpu_before = time.process_time()
    started = time.perf_counter()
    end = started + limits.duration_s
    while len(latencies) < limits.max_requests and time.perf_counter() < end:
        sent_at = time.perf_counter()
        model.backend.predict_proba(batch)
        latencies.append(time.perf_counter() - sent_at)
    elapsed = time.perf_counter() - started
    return summarize(
        target=TARGET, mode=f"model-b{batch_size}", concurrency=1, latencies_s=latencies,
        images=len(latencies) * batch_size, errors={}, elapsed_s=elapsed,
        cpu_s=time.process_time() - cpu_before, bytes_per_image=None,
        notes={"batch_size": batch_size, "torch_threads": settings.torch_threads},
    )


async def pipeline(
    engine: Engine, images: Sequence[bytes], limits: Limits, top_k: int, model: str
) -> RunResult:
    """decode + preprocess + batched inference + top-K through the engine, by the same closed loop."""

    async def send(n: int) -> Sent:
        await engine.classify(images[n % len(images)], top_k, model)
        return Sent(1)

    return await closed_loop(send, limits, target=TARGET, mode="pipeline", bytes_per_image=None)
