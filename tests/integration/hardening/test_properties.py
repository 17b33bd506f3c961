"""Property-based tests: any request message or image bytes get a defined answer on both transports."""

from __future__ import annotations

import base64

import grpc
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.harness import ServerProcess, skimage_photo
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

RUNS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PHOTO = skimage_photo("rocket.jpg")
MODELS = st.one_of(st.just(""), st.just("resnet18"), st.text(max_size=12))


def _expected(image: bytes, top_k: int, model: str) -> str:
    """What the contract says the answer must be."""
    if model not in ("", "resnet18"):
        return "NOT_FOUND"
    if top_k < 0 or top_k > 1000:
        return "INVALID_ARGUMENT"
    return "OK" if image == PHOTO else "INVALID_ARGUMENT"


@RUNS
@given(
    image=st.one_of(st.just(PHOTO), st.binary(max_size=2048), st.just(PHOTO[: len(PHOTO) // 3])),
    top_k=st.integers(min_value=-(2**31), max_value=2**31 - 1) | st.integers(-2, 1002),
    model=MODELS,
)
def test_grpc_answers_every_request_as_the_contract_says(server: ServerProcess, image: bytes, top_k: int, model: str) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        try:
            reply = pb_grpc.ClassifierServiceStub(channel).Classify(
                pb.ClassifyRequest(image=image, top_k=top_k, model=model), timeout=30
            )
            outcome = "OK"
            assert len(reply.predictions) == (top_k or 5)
        except grpc.RpcError as error:
            outcome = error.code().name
    assert outcome == _expected(image, top_k, model)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@RUNS
@given(
    document=st.dictionaries(
        st.sampled_from(["image", "topK", "top_k", "model", "extra"]),
        JSON_VALUES | st.just(base64.b64encode(PHOTO).decode()),
        max_size=4,
    )
)
def test_http_never_answers_5xx_to_any_json(server: ServerProcess, document: dict) -> None:
    reply = httpx.post(f"{server.http_url}/v1/classify", json=document, timeout=30)
    assert reply.status_code in (200, 400, 404), (document, reply.status_code, reply.text)
    body = reply.json()
    if reply.status_code == 200:
        assert body["predictions"] and body["model"] == "resnet18"
    else:
        assert set(body) == {"code", "message", "details"} and body["message"]


@RUNS
@given(image=st.binary(max_size=4096), top_k=st.integers(-5, 1005))
def test_http_upload_of_any_bytes_is_a_clean_answer(server: ServerProcess, image: bytes, top_k: int) -> None:
    reply = httpx.post(
        f"{server.http_url}/v1/classify:upload", files={"file": ("x", image)}, data={"topK": str(top_k)}, timeout=30
    )
    assert reply.status_code == 400 and reply.json()["code"] == 3
