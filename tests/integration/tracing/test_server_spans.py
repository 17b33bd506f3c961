"""Spans of a real in-process service: every API on both transports, errors, W3C context, what is not traced."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from classify import classify_pb2 as tutorial_pb
from classify import classify_pb2_grpc as tutorial_grpc
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from inference import grpc_service_pb2 as oip_pb
from inference import grpc_service_pb2_grpc as oip_grpc
from tests.integration.tracing.conftest import TracedService

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def channel(service: TracedService) -> Iterator[grpc.Channel]:
    service.clear()
    with grpc.insecure_channel(service.grpc_address) as open_channel:
        yield open_channel


def _wait(service: TracedService, batches: int = 0, servers: int = 1) -> list[ReadableSpan]:
    """The spans once ``batches`` batch spans and ``servers`` SERVER spans have ended (a span ends after the
    answer is on its way, so the client can be faster than the span)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = service.spans()
        if (sum(s.name == "classify.batch" for s in spans) >= batches
                and sum(s.kind is SpanKind.SERVER for s in spans) >= servers):
            return spans
        time.sleep(0.05)
    return service.spans()


def _tree(spans: list[ReadableSpan], server: ReadableSpan) -> None:
    """Each image under ``server`` has its two children and is linked, at its position, from the batch it names."""
    images = [s for s in spans if s.parent and s.parent.span_id == server.context.span_id]
    assert images and all(i.name == "classify.image" for i in images)
    for image in images:
        assert image.attributes is not None
        children = sorted(c.name for c in spans if c.parent and c.parent.span_id == image.context.span_id)
        assert children == ["classify.preprocess", "classify.queue"]
        (batch,) = [b for b in spans if b.name == "classify.batch"
                    and format(b.context.span_id, "016x") == image.attributes["classify.batch.span_id"]]
        (link,) = [link for link in batch.links if link.context.span_id == image.context.span_id]
        assert link.attributes is not None
        assert link.attributes["classify.batch.position"] == image.attributes["classify.batch.position"]
        assert batch.attributes is not None and batch.attributes["classify.model"] == "resnet18"


def _server_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name and s.kind is SpanKind.SERVER]
    return span


def test_classify_over_grpc(service: TracedService, channel: grpc.Channel, photos: dict[str, bytes]) -> None:
    pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=photos["chelsea.png"]), timeout=30)
    spans = _wait(service, 1)
    server = _server_span(spans, "classify.v1.ClassifierService/Classify")
    assert server.attributes is not None
    assert {k: server.attributes[k] for k in ("rpc.system", "rpc.system.name", "rpc.service", "rpc.method",
                                               "rpc.response.status_code", "rpc.grpc.status_code")} == {
        "rpc.system": "grpc", "rpc.system.name": "grpc", "rpc.service": "classify.v1.ClassifierService",
        "rpc.method": "classify.v1.ClassifierService/Classify", "rpc.response.status_code": "OK",
        "rpc.grpc.status_code": 0,
    }
    assert server.attributes["network.peer.address"] == "127.0.0.1"
    assert server.status.status_code is StatusCode.UNSET
    _tree(spans, server)


def test_batch_and_stream_calls_have_one_image_span_per_image(
    service: TracedService, channel: grpc.Channel, photos: dict[str, bytes]
) -> None:
    stub = pb_grpc.ClassifierServiceStub(channel)
    images = list(photos.values())[:4]
    stub.ClassifyBatch(pb.ClassifyBatchRequest(requests=[pb.ClassifyRequest(image=i) for i in images]), timeout=60)
    stream = [pb.ClassifyStreamRequest(request_id=str(n), request=pb.ClassifyRequest(image=i)) for n, i in enumerate(images)]
    assert len(list(stub.ClassifyStream(iter(stream), timeout=60))) == len(images)
    spans = _wait(service, 2, servers=2)
    for name in ("ClassifyBatch", "ClassifyStream"):
        server = _server_span(spans, f"classify.v1.ClassifierService/{name}")
        assert sum(1 for s in spans if s.parent and s.parent.span_id == server.context.span_id) == len(images)
        _tree(spans, server)


def test_the_tutorial_and_the_oip_over_grpc(service: TracedService, channel: grpc.Channel, photos: dict[str, bytes]) -> None:
    tutorial_grpc.ClassifierStub(channel).Predict(tutorial_pb.ImageRequest(image=photos["coffee.png"], topk=3), timeout=30)
    images = [photos["chelsea.png"], photos["rocket.jpg"]]
    request = oip_pb.ModelInferRequest(model_name="resnet18", inputs=[oip_pb.ModelInferRequest.InferInputTensor(
        name="IMAGE", datatype="BYTES", shape=[2, 1], contents=oip_pb.InferTensorContents(bytes_contents=images))])
    oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    spans = _wait(service, 2, servers=2)
    _tree(spans, _server_span(spans, "classify.Classifier/Predict"))
    oip = _server_span(spans, "inference.GRPCInferenceService/ModelInfer")
    _tree(spans, oip)
    assert sum(1 for s in spans if s.parent and s.parent.span_id == oip.context.span_id) == 2


@pytest.mark.parametrize(("path", "route", "body"), [
    ("/v1/classify", "/v1/classify", lambda image: {"json": {"image": base64.b64encode(image).decode()}}),
    ("/predict/file", "/predict/file", lambda image: {"files": {"file": image}}),
    ("/v2/models/resnet18/infer", "/v2/models/{name}/infer", lambda image: {"json": {"inputs": [
        {"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}]}}),
])
def test_every_api_over_http(service: TracedService, photos: dict[str, bytes], path: str, route: str, body: object) -> None:
    service.clear()
    response = httpx.post(service.http_url + path, timeout=60, **body(photos["chelsea.png"]))  # type: ignore[operator]
    assert response.status_code == 200, response.text
    spans = _wait(service, 1)
    server = _server_span(spans, f"POST {route}")  # named by the route template: bounded cardinality
    assert server.attributes is not None and server.attributes["http.route"] == route
    _tree(spans, server)


@pytest.mark.parametrize(("call", "code"), [
    (lambda stub: stub.Classify(pb.ClassifyRequest(image=b"not an image"), timeout=10), "INVALID_ARGUMENT"),
    (lambda stub: stub.Classify(pb.ClassifyRequest(image=b"x", model="nope"), timeout=10), "NOT_FOUND"),
    (lambda stub: stub.GetModel(pb.GetModelRequest(), timeout=10), "INVALID_ARGUMENT"),
])
def test_a_grpc_error_sets_the_status_the_client_gets(
    service: TracedService, channel: grpc.Channel, call: object, code: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        call(pb_grpc.ClassifierServiceStub(channel))  # type: ignore[operator]
    assert raised.value.code().name == code  # type: ignore[attr-defined]
    (server,) = [s for s in _wait(service) if s.kind is SpanKind.SERVER]
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == f"{code}: {raised.value.details()}"  # type: ignore[attr-defined]
    assert server.attributes is not None and server.attributes["rpc.response.status_code"] == code
    assert server.attributes["rpc.grpc.status_code"] == raised.value.code().value[0]  # type: ignore[attr-defined]


def test_an_http_error_sets_the_status_the_client_gets(service: TracedService) -> None:
    service.clear()
    response = httpx.post(service.http_url + "/v1/classify", json={"image": "AAAA"}, timeout=10)
    assert response.status_code == 400
    (server,) = [s for s in _wait(service) if s.kind is SpanKind.SERVER]
    assert server.status.status_code is StatusCode.ERROR and server.attributes is not None
    assert server.attributes["http.response.status_code"] == 400
    assert server.status.description == f"INVALID_ARGUMENT: {response.json()['message']}"


def test_grpc_metadata_traceparent_is_the_parent(service: TracedService, channel: grpc.Channel, photos: dict[str, bytes]) -> None:
    metadata = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"), ("tracestate", "vendor=value"))
    pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=photos["coffee.png"]), metadata=metadata, timeout=30)
    server = _server_span(_wait(service, 1), "classify.v1.ClassifierService/Classify")
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID


HOSTILE = [
    ("traceparent", "garbage"),
    ("traceparent", f"00-{'0' * 32}-{PARENT_ID}-01"),
    ("traceparent", f"ff-{TRACE_ID}-{PARENT_ID}-01"),
    ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01-extra"),
    ("traceparent", f"00-{'a' * 6000}-{PARENT_ID}-01"),
    ("tracestate", "x" * 7000),
    ("tracestate", ",".join(f"k{i}=v" for i in range(40))),
]


@pytest.mark.parametrize(("key", "value"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_grpc_trace_context_starts_a_fresh_trace(
    service: TracedService, channel: grpc.Channel, photos: dict[str, bytes], key: str, value: str
) -> None:
    """Malformed or oversized trace context: the call succeeds in its usual time, in a trace of its own
    (or, for a bad tracestate alone, under its valid parent with the state dropped)."""
    metadata = [(key, value)] if key == "traceparent" else [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"), (key, value)]
    started = time.perf_counter()
    pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=photos["coffee.png"]), metadata=metadata, timeout=30)
    assert time.perf_counter() - started < 10
    server = _server_span(_wait(service, 1), "classify.v1.ClassifierService/Classify")
    if key == "traceparent":
        assert server.parent is None and format(server.context.trace_id, "032x") != TRACE_ID
    else:
        assert format(server.context.trace_id, "032x") == TRACE_ID and len(server.context.trace_state) == 0


def test_health_and_reflection_are_not_traced(service: TracedService, channel: grpc.Channel) -> None:
    """(A traced call made last, and waited for, proves the untraced ones had time to show up.)"""
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    list(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    for path in ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(service.http_url + path, timeout=10).status_code == 200
    pb_grpc.ClassifierServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
    assert [s.name for s in _wait(service)] == ["classify.v1.ClassifierService/ListModels"]
