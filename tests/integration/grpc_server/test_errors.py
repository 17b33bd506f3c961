"""Bad input gets a clear status and message; the server keeps serving."""

from __future__ import annotations

import io

import grpc
import pytest
from PIL import Image

from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from tests.unit.core.test_images import _png_header_only

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _truncated_jpeg(photo: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


CASES = {
    "truncated jpeg": (lambda p: pb.ClassifyRequest(image=_truncated_jpeg(p)), INVALID, "truncated or corrupt"),
    "random bytes": (lambda p: pb.ClassifyRequest(image=bytes(range(256)) * 40), INVALID, "could not be decoded"),
    "empty image": (lambda p: pb.ClassifyRequest(), INVALID, "empty"),
    "negative top_k": (lambda p: pb.ClassifyRequest(image=p, top_k=-1), INVALID, "top_k must be between 0 and 1000"),
    "top_k above classes": (lambda p: pb.ClassifyRequest(image=p, top_k=1001), INVALID, "got 1001"),
    "decompression bomb": (lambda p: pb.ClassifyRequest(image=_png_header_only(100_000, 100_000)), INVALID, "pixels"),
    "unknown model": (lambda p: pb.ClassifyRequest(image=p, model="vgg99"), grpc.StatusCode.NOT_FOUND, "not served"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_request_gets_status_and_server_keeps_serving(case: str, channel: grpc.Channel, photos: dict[str, bytes]) -> None:
    build, code, message = CASES[case]
    stub = pb_grpc.ClassifierServiceStub(channel)
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(build(photos["chelsea.png"]), timeout=30)
    assert error.value.code() == code
    assert message in error.value.details()
    assert "Traceback" not in error.value.details()
    good = stub.Classify(pb.ClassifyRequest(image=photos["chelsea.png"]), timeout=30)
    assert len(good.predictions) == 5


def test_message_above_limit_is_resource_exhausted(channel: grpc.Channel, photos: dict[str, bytes]) -> None:
    """The session server runs with --max-request-bytes 8 MiB."""
    stub = pb_grpc.ClassifierServiceStub(channel)
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(pb.ClassifyRequest(image=b"\0" * (9 << 20)), timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(stub.Classify(pb.ClassifyRequest(image=photos["coffee.png"]), timeout=30).predictions) == 5


def test_expired_deadline_is_deadline_exceeded(channel: grpc.Channel, photos: dict[str, bytes]) -> None:
    stub = pb_grpc.ClassifierServiceStub(channel)
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(pb.ClassifyRequest(image=photos["astronaut.png"]), timeout=0.001)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
