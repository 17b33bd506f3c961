"""Spans of the core: one per image (its decode + preprocess and its queue wait as children) and one per batch.

Following OpenTelemetry's guidance for batch processing, a batch is not filed under
any one request's trace: its span starts a trace of its own and carries a link to
the span of every image it served. Each image span names its batch (span and trace
id), its position in it, the batch size, why the batch was released and how long
the image waited in the queue, so a trace answers "was it waiting or computing?".

The core depends on the OpenTelemetry API only, imported when a `CoreTracer` is
made: the composition root makes one from the SDK's tracer provider when tracing is
on (service/tracing.py). With tracing off the engine holds no CoreTracer and does no
tracing work for an image.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from service.errors import ServiceError

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, TracerProvider

    from service.core.models import ModelInfo

SCOPE = "classify.core"

# Span names (low cardinality: the model is an attribute).
IMAGE_SPAN = "classify.image"
PREPROCESS_SPAN = "classify.preprocess"
QUEUE_SPAN = "classify.queue"
BATCH_SPAN = "classify.batch"


def model_attributes(info: ModelInfo) -> dict[str, str]:
    """What names a model version on a span."""
    return {"classify.model": info.name, "classify.model.version": info.version, "classify.backend": info.backend}


def error_code(error: BaseException) -> tuple[str, str]:
    """The canonical code name and message a client gets for ``error`` (INTERNAL for anything unexpected)."""
    if isinstance(error, ServiceError):
        return error.code.name, error.message
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED", "the call was cancelled"
    return "INTERNAL", type(error).__name__


class CoreTracer:
    """Makes the core's spans with a tracer provider's tracer (the API's types: no SDK here)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import context, trace

        self._trace = trace
        self._empty_context = context.Context()
        self._tracer = provider.get_tracer(SCOPE)

    def image(self, info: ModelInfo) -> ImageTrace | None:
        """Start one image's span under the caller's current span; None when that call is not sampled."""
        span = self._tracer.start_span(IMAGE_SPAN, attributes=model_attributes(info))
        if not span.is_recording():
            return None
        return ImageTrace(self, span)

    def batch(
        self, attributes: Mapping[str, Any], images: Sequence[tuple[int, ImageTrace]], size: int, release: str
    ) -> Span:
        """Start a batch's span (a trace root) linked to the spans of its traced ``images`` (position, trace)."""
        started = time.time_ns()
        span = self._tracer.start_span(
            BATCH_SPAN,
            context=self._empty_context,  # a root: a batch belongs to no single request's trace
            attributes={**attributes, "classify.batch.size": size, "classify.batch.release": release},
            links=[
                self._trace.Link(image.span.get_span_context(), {"classify.batch.position": position})
                for position, image in images
            ],
            start_time=started,
        )
        batch = span.get_span_context()
        for position, image in images:
            image.batched(batch, position, size, started, release)
        return span

    def batch_failed(self, span: Span, message: str) -> None:
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"INTERNAL: {message}"))
        span.set_attribute("error.type", "INTERNAL")

    def child(self, parent: Span, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any]) -> None:
        """A finished child span of ``parent`` with the given times (the work ran on another thread)."""
        context = self._trace.set_span_in_context(parent, self._empty_context)
        self._tracer.start_span(name, context=context, attributes=attributes, start_time=start_ns).end(end_ns)

    def failed(self, span: Span, error: BaseException) -> None:
        code, message = error_code(error)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, f"{code}: {message}"))
        span.set_attribute("error.type", code)


class ImageTrace:
    """One image's way through the engine, recorded as it goes and turned into spans when it is done.

    ``batched`` is called on the batching thread before the image's future
    resolves; everything else on the event loop, after it.
    """

    __slots__ = ("_tracer", "span", "_preprocess_ns", "_queued_ns", "_batch", "_position", "_size", "_started_ns",
                 "_release")

    def __init__(self, tracer: CoreTracer, span: Span) -> None:
        self._tracer = tracer
        self.span = span
        self._preprocess_ns = 0  # decode + preprocess time
        self._queued_ns = 0  # when it entered the queue (0: never did)
        self._batch: SpanContext | None = None
        self._position = self._size = self._started_ns = 0
        self._release = ""

    def queued(self, preprocess_s: float) -> None:
        """The image was decoded and preprocessed in ``preprocess_s`` and now enters the queue."""
        self._queued_ns = time.time_ns()
        self._preprocess_ns = int(preprocess_s * 1e9)

    def batched(self, batch: SpanContext, position: int, size: int, started_ns: int, release: str) -> None:
        self._batch, self._position, self._size, self._started_ns, self._release = (
            batch, position, size, started_ns, release
        )

    def failed(self, error: BaseException) -> None:
        self._tracer.failed(self.span, error)

    def end(self) -> None:
        """Add the preprocess and queue spans and the batch attributes, then end the image's span."""
        span, tracer = self.span, self._tracer
        if self._queued_ns:
            tracer.child(span, PREPROCESS_SPAN, self._queued_ns - self._preprocess_ns, self._queued_ns, {})
            left_queue = self._started_ns or time.time_ns()
            wait_ms = (left_queue - self._queued_ns) / 1e6
            tracer.child(span, QUEUE_SPAN, self._queued_ns, left_queue, {"classify.queue.wait_ms": wait_ms})
            span.set_attribute("classify.queue.wait_ms", wait_ms)
        if self._batch is not None:
            span.set_attributes({
                "classify.batch.span_id": format(self._batch.span_id, "016x"),
                "classify.batch.trace_id": format(self._batch.trace_id, "032x"),
                "classify.batch.position": self._position,
                "classify.batch.size": self._size,
                "classify.batch.release": self._release,
            })
        span.end()
