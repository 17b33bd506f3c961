"""Overload: more concurrent clients than the server admits get shed quickly, with retry advice as data
(google.rpc.RetryInfo over gRPC, Retry-After over HTTP); the rest are right. Too large is not retryable."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from bench.harness import ServerProcess, start_server
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc


def _retry_info(error: grpc.RpcError) -> float | None:
    """The retry delay of google.rpc.RetryInfo in the call's rich status, if any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def _retry_after(reply: httpx.Response) -> float | None:
    return float(reply.headers["retry-after"]) if "retry-after" in reply.headers else None


@pytest.fixture(scope="module")
def small_server(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(weights, tmp_path_factory.mktemp("small"), "--queue-size", "4", "--batch-max-size", "2")
    yield server
    server.stop()


def test_excess_load_is_shed_with_retry_hints(small_server: ServerProcess, photos: dict[str, bytes]) -> None:
    image = photos["astronaut.png"]
    outcomes: list[tuple[str, object]] = []
    lock = threading.Lock()

    def grpc_client() -> None:
        with grpc.insecure_channel(small_server.grpc_address) as channel:
            stub = pb_grpc.ClassifierServiceStub(channel)
            for _ in range(3):
                try:
                    reply = stub.Classify(pb.ClassifyRequest(image=image, top_k=5), timeout=60)
                    result: tuple[str, object] = ("ok", [p.probability for p in reply.predictions])
                except grpc.RpcError as error:
                    result = (error.code().name, _retry_info(error))
                with lock:
                    outcomes.append(result)

    def http_client() -> None:
        body = {"image": base64.b64encode(image).decode(), "topK": 5}
        for _ in range(3):
            reply = httpx.post(f"{small_server.http_url}/v1/classify", json=body, timeout=60)
            if reply.status_code == 200:
                result: tuple[str, object] = ("ok", [p["probability"] for p in reply.json()["predictions"]])
            else:
                result = (str(reply.status_code), _retry_after(reply))
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=grpc_client) for _ in range(12)]
    threads += [threading.Thread(target=http_client) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    assert len(outcomes) == 72
    kinds = {kind for kind, _ in outcomes}
    assert kinds <= {"ok", "RESOURCE_EXHAUSTED", "429"}, kinds
    shed = [hint for kind, hint in outcomes if kind != "ok"]
    assert shed, "nothing was shed with 24 clients and room for 4"
    assert all(hint == 1.0 for hint in shed), shed  # RetryInfo's retry_delay / Retry-After
    for kind, probabilities in outcomes:
        if kind == "ok":
            assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    print(f"{len(shed)} of {len(outcomes)} shed")


def test_too_large_carries_no_retry_advice(small_server: ServerProcess) -> None:
    """An image above --max-image-bytes is RESOURCE_EXHAUSTED / 413, and retrying it cannot help: no RetryInfo, no Retry-After."""
    image = b"\xff" * (16 * 2**20 + 1)  # one byte above the default --max-image-bytes
    with grpc.insecure_channel(small_server.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=image), timeout=60)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_info(raised.value) is None
    reply = httpx.post(f"{small_server.http_url}/v1/classify:upload", files={"file": image}, timeout=60)
    assert reply.status_code == 413 and "retry-after" not in reply.headers, reply.headers
    assert reply.json()["code"] == 8 and reply.json()["details"] == []
