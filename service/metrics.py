"""Prometheus metrics, shared by the core (batching, timing) and both transports (requests)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "classify_requests_total", "Finished requests by transport, method/route and status code.",
    ["transport", "method", "code"],
)
REQUEST_SECONDS = Histogram(
    "classify_request_duration_seconds", "Request latency by transport and method/route.",
    ["transport", "method"], buckets=_LATENCY_BUCKETS,
)
PREPROCESS_SECONDS = Histogram(
    "classify_preprocess_seconds", "Decoding plus preprocessing time of one image.", ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
INFERENCE_SECONDS = Histogram(
    "classify_inference_seconds", "Model time of one batch.", ["model"], buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "classify_batch_size", "Images per inference batch.", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64),
)
QUEUE_DEPTH = Gauge("classify_queue_depth", "Images waiting for an inference batch.", ["model"])
QUEUE_WAIT_SECONDS = Histogram(
    "classify_queue_wait_seconds", "Time an image waited in the queue before its batch started.", ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_RELEASES = Counter(
    "classify_batch_releases_total",
    "Inference batches started, by why the batch was closed: full, timer (the wait for images being "
    "decoded ran out), none_decoding (no other image was on its way), shutdown.",
    ["model", "reason"],
)
IN_FLIGHT = Gauge("classify_images_in_flight", "Images admitted: decoding, queued or in inference.")
SHED = Counter("classify_shed_total", "Images refused because the server was at capacity.")
CANCELLED = Counter("classify_cancelled_total", "Queued images dropped because their caller left.", ["model"])
MODEL_READY = Gauge("classify_model_ready", "1 once the model is loaded and warm, 0 while draining.", ["model"])
VERSIONS_LOADED = Gauge("classify_model_versions_loaded", "Versions of the model held in memory (serving or draining).", ["model"])
VERSION_REQUESTS = Counter(
    "classify_model_version_requests_total", "Images admitted, by the model version that answers them.", ["model", "version"],
)
MODEL_LOADS = Counter("classify_model_loads_total", "Model version loads by outcome (ready, failed).", ["model", "outcome"])
MODEL_LOAD_SECONDS = Histogram(
    "classify_model_load_seconds", "Time to verify, load and warm up one model version.", ["model"],
    buckets=(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
TRACE_SPANS_DROPPED = Counter(
    "classify_trace_spans_dropped_total",
    "Finished spans never exported: queue_full (the export queue was full), export_failed (the collector "
    "refused them or was unreachable until the export timeout), shutdown (still queued when the process stopped).",
    ["reason"],
)
