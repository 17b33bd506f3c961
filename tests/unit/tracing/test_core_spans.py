"""The core's spans: one per image with its preprocess and queue children, one per batch linked to its images.

The model is a stand-in (a recording backend over tiny PNGs): the unit here is the engine's and batcher's tracing.
"""

from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags
from PIL import Image

from service.core.batching import BatchingConfig
from service.core.engine import Engine
from service.core.images import ImageLimits
from service.core.models import LoadedModel, ModelInfo
from service.core.preprocessing import Preprocessing
from service.core.tracing import CoreTracer
from service.errors import InvalidArgument
from tests.unit.tracing.conftest import Traced, hex_id

CLASSES = 4


class GatedBackend:
    """Returns fixed probabilities; holds each batch until `gate` is set, so queued images share the next one."""

    name, device, precision = "stub", "cpu", "fp32"

    def __init__(self, fail: bool = False) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a batch reached the model
        self.fail = fail
        self.sizes: list[int] = []

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        self.sizes.append(len(batch))
        if self.fail:
            raise RuntimeError("boom")
        return np.tile(np.linspace(0.1, 0.4, CLASSES, dtype=np.float32), (len(batch), 1))


def _model(backend: GatedBackend) -> LoadedModel:
    info = ModelInfo(
        name="stub", architecture="stub", weights_sha256="ab" * 32, input_height=8, input_width=8,
        labels=tuple(f"c{i}" for i in range(CLASSES)), backend="stub", device="cpu", precision="fp32",
    )
    return LoadedModel(info, Preprocessing(resize_size=8, crop_size=8, mean=(0.5,) * 3, std=(0.5,) * 3), backend)


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), (shade, shade, shade)).save(buffer, "PNG")
    return buffer.getvalue()


def _engine(backend: GatedBackend, spans: Traced | None, max_batch: int = 8) -> Engine:
    engine = Engine(
        [_model(backend)], limits=ImageLimits(1 << 20, 1 << 20),
        batching=BatchingConfig(max_batch_size=max_batch, max_delay_s=0.0),
        decode_workers=2, max_batch_images=16, max_in_flight=64,
        tracer=CoreTracer(spans.tracing.provider) if spans is not None else None,
    )
    engine.warm_up()
    return engine


async def _classify_together(engine: Engine, backend: GatedBackend, count: int, tracer: trace.Tracer) -> None:
    """One image first (the model holds it), then ``count - 1`` that queue behind it and share the next batch."""
    batcher = engine.registry.served()[0].batcher
    with tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER):
        backend.gate.clear()
        backend.entered.clear()
        first = asyncio.ensure_future(engine.classify(_png(0)))
        while not backend.entered.is_set():  # decoded and inside the held model
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(engine.classify(_png(i * 20))) for i in range(1, count)]
        while batcher.queue_depth < count - 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.06)  # a measurable queue wait
        backend.gate.set()
        await asyncio.gather(first, *rest)


def test_images_that_share_a_batch_are_each_linked_from_its_span(spans: Traced) -> None:
    """Four queued images run as one batch: its span links to each image span with its position, and each image
    span names the batch, its position, the batch size, the release reason and its queue wait."""
    backend = GatedBackend()
    engine = _engine(backend, spans)
    try:
        asyncio.run(_classify_together(engine, backend, 5, spans.tracing.provider.get_tracer("test")))
    finally:
        engine.close()
    assert backend.sizes[-2:] == [1, 4]
    (request,) = spans.named("request")
    images = spans.named("classify.image")
    assert len(images) == 5 and {i.parent.span_id for i in images} == {request.context.span_id}  # type: ignore[union-attr]
    batch = max(spans.named("classify.batch"), key=lambda b: b.attributes["classify.batch.size"])  # type: ignore[index]
    assert batch.parent is None and batch.context.trace_id != request.context.trace_id  # a trace of its own
    assert dict(batch.attributes) == {  # type: ignore[arg-type]
        "classify.model": "stub", "classify.model.version": "abababababab", "classify.backend": "stub",
        "classify.batch.size": 4, "classify.batch.release": "none_decoding",  # the four were all queued
    }
    linked = {link.context.span_id: link.attributes["classify.batch.position"] for link in batch.links}  # type: ignore[index]
    in_batch = [i for i in images if i.attributes["classify.batch.span_id"] == hex_id(batch.context.span_id, 16)]  # type: ignore[index]
    assert len(in_batch) == 4 and sorted(linked.values()) == [0, 1, 2, 3]
    for image in in_batch:
        attributes = image.attributes
        assert attributes is not None
        assert linked[image.context.span_id] == attributes["classify.batch.position"]
        assert attributes["classify.batch.trace_id"] == hex_id(batch.context.trace_id, 32)
        assert attributes["classify.batch.size"] == 4
        assert attributes["classify.queue.wait_ms"] > 50  # they waited for the held batch
        children = {c.name: c for c in spans.spans() if c.parent and c.parent.span_id == image.context.span_id}
        assert set(children) == {"classify.preprocess", "classify.queue"}
        queue = children["classify.queue"]
        assert queue.end_time == batch.start_time  # the wait ends when the batch starts
        assert children["classify.preprocess"].end_time <= queue.start_time  # type: ignore[operator]
        assert image.status.status_code is StatusCode.UNSET


def test_calls_that_are_not_sampled_make_no_core_spans(spans: Traced) -> None:
    """Under an unsampled parent, no image span and no batch span is recorded."""
    backend = GatedBackend()
    engine = _engine(backend, spans)
    unsampled = NonRecordingSpan(SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0)))
    try:
        async def call() -> None:
            with trace.use_span(unsampled):
                await engine.classify(_png(10))

        asyncio.run(call())
    finally:
        engine.close()
    assert spans.spans() == []


def test_an_image_that_fails_carries_the_code_the_client_gets(spans: Traced) -> None:
    backend = GatedBackend()
    engine = _engine(backend, spans)
    try:
        with pytest.raises(InvalidArgument):
            asyncio.run(engine.classify(b"not an image"))
    finally:
        engine.close()
    (image,) = spans.named("classify.image")
    assert image.status.status_code is StatusCode.ERROR
    assert image.status.description is not None and image.status.description.startswith("INVALID_ARGUMENT: ")
    assert image.attributes["error.type"] == "INVALID_ARGUMENT"  # type: ignore[index]
    assert spans.named("classify.queue") == [] and spans.named("classify.batch") == []


def test_a_failing_batch_marks_its_span_and_its_images(spans: Traced) -> None:
    backend = GatedBackend()
    engine = _engine(backend, spans)
    backend.fail = True
    try:
        with pytest.raises(Exception, match="internal error"):
            asyncio.run(engine.classify(_png(5)))
    finally:
        engine.close()
    (batch,) = spans.named("classify.batch")
    (image,) = spans.named("classify.image")
    assert batch.status.status_code is StatusCode.ERROR and image.status.status_code is StatusCode.ERROR
    assert batch.attributes["error.type"] == image.attributes["error.type"] == "INTERNAL"  # type: ignore[index]
    assert batch.links[0].context.span_id == image.context.span_id


def test_without_a_tracer_the_engine_makes_no_spans(spans: Traced) -> None:
    """Tracing off: the engine holds no CoreTracer, so nothing is recorded even under a current span."""
    backend = GatedBackend()
    engine = _engine(backend, None)
    try:
        async def call() -> None:
            with spans.tracing.provider.get_tracer("test").start_as_current_span("request"):
                await engine.classify(_png(10))

        asyncio.run(call())
    finally:
        engine.close()
    assert [s.name for s in spans.spans()] == ["request"]
