"""One error vocabulary: each class of bad request maps to the same code over gRPC and HTTP."""

from __future__ import annotations

import base64
import io

import grpc
import httpx
import pytest
from PIL import Image

from bench.harness import ServerProcess
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from http_gateway.errors import HTTP_STATUS, http_status
from service.errors import ErrorCode, Overloaded, PayloadTooLarge, RemoteError
from service.grpc_server.errors import GRPC_STATUS
from tests.unit.core.test_images import _png_header_only


def test_tables_cover_every_code_and_agree_on_numbers() -> None:
    """Both transports map every core code; gRPC's status numbers are the core's."""
    assert set(HTTP_STATUS) == set(ErrorCode) == set(GRPC_STATUS)
    for code, status in GRPC_STATUS.items():
        assert status.value[0] == int(code)



def test_retry_advice_not_the_python_type_makes_resource_exhausted_429() -> None:
    """Shed load (retry advice) is 429, a limit (none) 413, whatever class carries them."""
    assert http_status(PayloadTooLarge("too big")) == 413
    assert http_status(Overloaded("busy", retry_after=1.0)) == 429
    assert http_status(RemoteError(ErrorCode.RESOURCE_EXHAUSTED, "busy upstream", retry_after=2.0)) == 429
    assert http_status(RemoteError(ErrorCode.RESOURCE_EXHAUSTED, "too big upstream")) == 413


def _truncated(photo: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(out, format="JPEG")
    return out.getvalue()[:2000]


BAD = {
    "not an image": (lambda p: dict(image=b"hello"), ErrorCode.INVALID_ARGUMENT, 400),
    "truncated": (lambda p: dict(image=_truncated(p)), ErrorCode.INVALID_ARGUMENT, 400),
    "empty": (lambda p: dict(image=b""), ErrorCode.INVALID_ARGUMENT, 400),
    "bomb": (lambda p: dict(image=_png_header_only(60_000, 60_000)), ErrorCode.INVALID_ARGUMENT, 400),
    "negative top_k": (lambda p: dict(image=p, top_k=-1), ErrorCode.INVALID_ARGUMENT, 400),
    "huge top_k": (lambda p: dict(image=p, top_k=5000), ErrorCode.INVALID_ARGUMENT, 400),
    "unknown model": (lambda p: dict(image=p, model="nope"), ErrorCode.NOT_FOUND, 404),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_same_code_over_both_transports(case: str, server: ServerProcess, photos: dict[str, bytes]) -> None:
    build, code, http_status = BAD[case]
    fields = build(photos["chelsea.png"])
    with grpc.insecure_channel(server.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as grpc_error:
            pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(**fields), timeout=30)
    body = {"image": base64.b64encode(fields["image"]).decode(), "topK": fields.get("top_k", 0), "model": fields.get("model", "")}
    json_reply = httpx.post(f"{server.http_url}/v1/classify", json=body, timeout=30)
    upload_reply = httpx.post(
        f"{server.http_url}/v1/classify:upload",
        files={"file": ("x", fields["image"])},
        data={"topK": str(fields.get("top_k", 0)), "model": fields.get("model", "")},
        timeout=30,
    )
    assert grpc_error.value.code().value[0] == int(code)
    for reply in (json_reply, upload_reply):
        assert reply.status_code == http_status, reply.text
        assert reply.json()["code"] == int(code)
        assert reply.json()["message"] == grpc_error.value.details()
        assert "Traceback" not in reply.text


@pytest.mark.parametrize(
    ("route", "kwargs", "status"),
    [
        ("/predict/file", {"files": {"file": ("x.jpg", b"junk")}}, 400),
        ("/predict/file", {"data": {"nofile": "1"}}, 400),
        ("/predict/b64", {"json": {"image_base64": "%%%"}}, 400),
        ("/predict/b64", {"json": {"topk": 3}}, 400),
        ("/predict/b64", {"json": {"image_base64": "aGVsbG8=", "topk": -3}}, 400),
        ("/v1/classify:upload", {"json": {"image": ""}}, 400),
        ("/v1/classify:upload", {"files": {"other": ("x", b"1")}}, 400),
        ("/v1/nothing", {"json": {}}, 404),
    ],
)
def test_http_specific_bad_requests(route: str, kwargs: dict, status: int, server: ServerProcess) -> None:
    reply = httpx.post(f"{server.http_url}{route}", timeout=30, **kwargs)
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"code", "message", "details"}
