"""A hostile-input corpus, generated here, over every route and RPC that takes an image."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2
from PIL import Image

from bench.harness import ServerProcess, skimage_photo
from classify import classify_pb2 as tutorial_pb
from classify import classify_pb2_grpc as tutorial_grpc
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

INVALID = 3  # google.rpc.Code INVALID_ARGUMENT


def _png_chunks(width: int, height: int, data: bytes, depth: int = 8, colour: int = 2) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(skimage_photo("chelsea.png"))).convert("RGB").save(out, format="JPEG")
    return out.getvalue()


def _gif_bomb() -> bytes:
    """A GIF whose logical screen claims 65535 x 65535 pixels."""
    return b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b";"


def _zlib_bomb() -> bytes:
    """A ~180 KB PNG inflating to 180 MB of pixels (10000 x 6000 RGB), above the 50 MP limit."""
    packer = zlib.compressobj(9)
    row = b"\0" * (10000 * 3 + 1)
    raw = b"".join(packer.compress(row) for _ in range(6000)) + packer.flush()
    return _png_chunks(10000, 6000, raw)


CORPUS: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "one byte": lambda: b"\xff",
    "text": lambda: b"GET / HTTP/1.1\r\n\r\n",
    "random bytes": lambda: bytes((i * 7919) % 256 for i in range(5000)),
    "truncated jpeg": lambda: _jpeg()[:1500],
    "jpeg header only": lambda: _jpeg()[:20],
    "corrupt jpeg body": lambda: _jpeg()[:600] + b"\x00" * 4000,
    "png bomb header": lambda: _png_chunks(100_000, 100_000, zlib.compress(b"\0")),
    "png zlib bomb": _zlib_bomb,
    "png zero size": lambda: _png_chunks(0, 0, zlib.compress(b"")),
    "png bad crc": lambda: _png_chunks(10, 10, b"not zlib at all"),
    "gif bomb": _gif_bomb,
    "svg": lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "eps (ghostscript)": lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    "pdf": lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
}


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return {name: make() for name, make in CORPUS.items()}


def _grpc_v1(server: ServerProcess, image: bytes) -> tuple[int, str]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        try:
            pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=image), timeout=60)
        except grpc.RpcError as error:
            return error.code().value[0], error.details()
    return 0, ""


def _grpc_tutorial(server: ServerProcess, image: bytes) -> tuple[int, str]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        try:
            tutorial_grpc.ClassifierStub(channel).Predict(tutorial_pb.ImageRequest(image=image), timeout=60)
        except grpc.RpcError as error:
            return error.code().value[0], error.details()
    return 0, ""


def _grpc_batch(server: ServerProcess, image: bytes) -> tuple[int, str]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        reply = pb_grpc.ClassifierServiceStub(channel).ClassifyBatch(
            pb.ClassifyBatchRequest(requests=[pb.ClassifyRequest(image=image)]), timeout=60
        )
    return reply.results[0].error.code, reply.results[0].error.message


def _grpc_stream(server: ServerProcess, image: bytes) -> tuple[int, str]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        (reply,) = pb_grpc.ClassifierServiceStub(channel).ClassifyStream(
            iter([pb.ClassifyStreamRequest(request_id="x", request=pb.ClassifyRequest(image=image))]), timeout=60
        )
    return reply.error.code, reply.error.message


def _http(route: str, build: Callable[[bytes], dict]) -> Callable[[ServerProcess, bytes], tuple[int, str]]:
    def call(server: ServerProcess, image: bytes) -> tuple[int, str]:
        reply = httpx.post(f"{server.http_url}{route}", timeout=60, **build(image))
        assert reply.status_code == 400, (route, reply.status_code, reply.text)
        body = reply.json()
        if "results" in body:
            return body["results"][0]["error"]["code"], body["results"][0]["error"]["message"]
        return body["code"], body["message"]

    return call


def _b64(image: bytes) -> str:
    return base64.b64encode(image).decode()


CALLERS = {
    "grpc Classify": _grpc_v1,
    "grpc ClassifyBatch": _grpc_batch,
    "grpc ClassifyStream": _grpc_stream,
    "grpc tutorial Predict": _grpc_tutorial,
    "http /v1/classify": _http("/v1/classify", lambda i: {"json": {"image": _b64(i)}}),
    "http /v1/classify:upload": _http("/v1/classify:upload", lambda i: {"files": {"file": ("x", i)}}),
    "http /predict/file": _http("/predict/file", lambda i: {"files": {"file": ("x.jpg", i)}}),
    "http /predict/b64": _http("/predict/b64", lambda i: {"json": {"image_base64": _b64(i)}}),
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_hostile_image_is_invalid_argument_everywhere(
    caller: str, server: ServerProcess, corpus: dict[str, bytes]
) -> None:
    """Every corpus entry gets INVALID_ARGUMENT / 400 with a message; never a crash, 5xx or hang."""
    for name, image in corpus.items():
        code, message = CALLERS[caller](server, image)
        assert code == INVALID, (caller, name, code, message)
        assert message and "Traceback" not in message, (caller, name)
    assert server.health() == health_pb2.HealthCheckResponse.SERVING


def test_multi_page_tiff_uses_the_first_page(server: ServerProcess) -> None:
    """skimage's multipage.tif: the first page is classified, no error."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        reply = pb_grpc.ClassifierServiceStub(channel).Classify(
            pb.ClassifyRequest(image=skimage_photo("multipage.tif")), timeout=60
        )
    assert len(reply.predictions) == 5


def test_too_many_images_in_one_batch(server: ServerProcess) -> None:
    image = skimage_photo("rocket.jpg")[:10]
    with grpc.insecure_channel(server.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as error:
            pb_grpc.ClassifierServiceStub(channel).ClassifyBatch(
                pb.ClassifyBatchRequest(requests=[pb.ClassifyRequest(image=image)] * 65), timeout=60
            )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 64 images" in error.value.details()
    reply = httpx.post(f"{server.http_url}/v1/classify:batch", json={"requests": [{"image": "AAAA"}] * 65}, timeout=60)
    assert reply.status_code == 400 and "at most 64 images" in reply.json()["message"]
    empty = httpx.post(f"{server.http_url}/v1/classify:batch", json={"requests": []}, timeout=60)
    assert empty.status_code == 400


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"hello"),
        ("application/x-www-form-urlencoded", b"image=abc"),
        ("application/json", b'{"image": ["not", "bytes"]}'),
        ("application/json", b'{"image": "AAAA", "topK": 1.5}'),
        ("application/json", b'{"image": "AAAA", "topK": "ten"}'),
        ("application/json", b'{"image": "AAAA", "model": 7}'),
        ("application/json", b'{"image": "AAAA", "extra": true}'),
        ("application/json", b'{"image": "AAAA",'),
        ("application/json", b"\xff\xfe\x00"),
    ],
)
def test_malformed_requests_are_400(content_type: str, body: bytes, server: ServerProcess) -> None:
    reply = httpx.post(f"{server.http_url}/v1/classify", content=body, headers={"content-type": content_type}, timeout=30)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == INVALID
