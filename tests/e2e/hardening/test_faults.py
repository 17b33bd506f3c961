"""Deadlines, cancellation, a failing model, and SIGTERM under load."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import ServerProcess, start_server
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from service.api.classifier_v1 import ClassifierServiceApi
from service.api.inference_v2 import InferenceServiceApi
from service.api.tutorial import TutorialClassifierApi
from service.core.batching import BatchingConfig
from service.core.engine import Engine, EngineRef
from service.core.images import ImageLimits
from service.core.models import LoadedModel, ModelSpec, load_model
from service.grpc_server.server import GrpcServer


@pytest.fixture(scope="module")
def strict_server(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """HTTP requests get 0.2 s: enough for one image on an idle server, not for a big batch."""
    server = start_server(weights, tmp_path_factory.mktemp("strict"), "--request-timeout-s", "0.2")
    yield server
    server.stop()


def _jpeg(photo: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


def test_http_timeout_is_504_and_grpc_deadline_is_deadline_exceeded(
    strict_server: ServerProcess, photos: dict[str, bytes]
) -> None:
    jpeg = _jpeg(photos["astronaut.png"])
    image = base64.b64encode(jpeg).decode()
    # A batch over HTTP: the images still queued when 0.2 s is up are DEADLINE_EXCEEDED, per image.
    reply = httpx.post(f"{strict_server.http_url}/v1/classify:batch", json={"requests": [{"image": image}] * 40}, timeout=60)
    assert reply.status_code == 200
    assert 4 in {r.get("error", {}).get("code") for r in reply.json()["results"]}
    # gRPC batches with a generous deadline keep the model busy for seconds (96
    # images queued, under the 128 admitted); a single HTTP request queued behind them runs out of its 0.2 s: 504.
    with grpc.insecure_channel(strict_server.grpc_address) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        busy = [
            stub.ClassifyBatch.future(pb.ClassifyBatchRequest(requests=[pb.ClassifyRequest(image=jpeg)] * 48), timeout=120)
            for _ in range(2)
        ]
        # On a busy machine the batches may take a while to arrive: wait until the server holds them,
        # so the single request really queues behind them (else it can be answered within 0.2 s).
        deadline = time.monotonic() + 60
        while _metric(strict_server, "classify_images_in_flight") < 48:
            assert time.monotonic() < deadline, "the busy batches never reached the server"
            time.sleep(0.05)
        single = httpx.post(f"{strict_server.http_url}/v1/classify", json={"image": image}, timeout=60)
        assert single.status_code == 504 and single.json()["code"] == 4, single.text
        assert all(r.HasField("response") for future in busy for r in future.result().results)
    with grpc.insecure_channel(strict_server.grpc_address) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ClassifyBatch(
                pb.ClassifyBatchRequest(requests=[pb.ClassifyRequest(image=base64.b64decode(image))] * 40), timeout=0.3
            )
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert len(stub.Classify(pb.ClassifyRequest(image=photos["rocket.jpg"]), timeout=30).predictions) == 5


def _metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_cancelled_calls_do_not_disturb_others(server: ServerProcess, photos: dict[str, bytes]) -> None:
    """gRPC callers that cancel and HTTP clients that hang up leave the other requests intact."""
    image = photos["astronaut.png"]
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        expected = [p.class_index for p in stub.Classify(pb.ClassifyRequest(image=image), timeout=30).predictions]
        futures = [stub.Classify.future(pb.ClassifyRequest(image=image), timeout=60) for _ in range(24)]
        for future in futures[::2]:
            future.cancel()
        kept = futures[1::2]
        assert all([p.class_index for p in f.result().predictions] == expected for f in kept)
    # An HTTP client sends a big batch and disconnects at once.
    before = _metric(server, "classify_requests_total", transport="http", code="499")
    body = httpx.Request("POST", f"{server.http_url}/v1/classify:batch",
                         json={"requests": [{"image": base64.b64encode(_jpeg(image)).decode()}] * 32}).read()
    with socket.create_connection(("127.0.0.1", server.http_port)) as sock:
        sock.sendall(
            b"POST /v1/classify:batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 30
    while _metric(server, "classify_requests_total", transport="http", code="499") <= before:
        assert time.monotonic() < deadline, "the hung-up request was not cancelled"
        time.sleep(0.2)
    with grpc.insecure_channel(server.grpc_address) as channel:
        again = pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=image), timeout=30)
    assert [p.class_index for p in again.predictions] == expected


class FailingOnDemand:
    """The real model, made to fail its next batch the way a GPU or driver error would."""

    def __init__(self, model: LoadedModel) -> None:
        self.inner = model.backend
        self.name, self.device, self.precision = self.inner.name, self.inner.device, self.inner.precision
        self.fail_next = False

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("simulated device failure")
        return self.inner.predict_proba(batch)


def test_model_exception_fails_only_its_batch_and_the_server_recovers(
    weights: Path, photos: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    model = load_model(ModelSpec("resnet18", "resnet18", weights))
    backend = FailingOnDemand(model)
    engine = Engine(
        [LoadedModel(model.info, model.preprocessing, backend)],
        limits=ImageLimits(1 << 24, 50_000_000), batching=BatchingConfig(),
        decode_workers=1, max_batch_images=8, max_in_flight=16,
    )
    engine.warm_up()
    ref = EngineRef()
    ref.set(engine)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start() -> tuple[GrpcServer, int]:  # grpc.aio servers belong to the loop they run on
        grpc_server = GrpcServer(
            ClassifierServiceApi(ref), TutorialClassifierApi(ref), InferenceServiceApi(ref), max_message_bytes=1 << 24
        )
        bound = grpc_server.listen("127.0.0.1", 0)
        await grpc_server.start()
        return grpc_server, bound

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ClassifierServiceStub(channel)
            backend.fail_next = True
            with pytest.raises(grpc.RpcError) as error:
                stub.Classify(pb.ClassifyRequest(image=photos["coffee.png"]), timeout=30)
            assert error.value.code() == grpc.StatusCode.INTERNAL
            assert "simulated" not in error.value.details() and "Traceback" not in error.value.details()
            assert len(stub.Classify(pb.ClassifyRequest(image=photos["coffee.png"]), timeout=30).predictions) == 5
        assert "simulated device failure" in caplog.text  # the traceback stays in the server log
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        engine.close()


def test_sigterm_under_load_completes_every_accepted_request(weights: Path, tmp_path: Path, photos: dict[str, bytes]) -> None:
    """After SIGTERM: health NOT_SERVING at once, new calls still answered for --shutdown-delay-s (a balancer's
    health checks need that long to notice), then refused at the transport; accepted calls complete; exit 0."""
    delay_s = 3.0
    server = start_server(weights, tmp_path, "--grace-period-s", "20", "--shutdown-delay-s", str(delay_s))
    image = photos["chelsea.png"]
    outcomes: list[tuple[float, str]] = []  # (started, outcome)
    lock = threading.Lock()
    stop_at = time.monotonic() + 40

    def grpc_client() -> None:
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.ClassifierServiceStub(channel)
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    reply = stub.Classify(pb.ClassifyRequest(image=image, top_k=3), timeout=30)
                    outcome = "ok" if len(reply.predictions) == 3 else "bad reply"
                except grpc.RpcError as error:
                    outcome = error.code().name
                with lock:
                    outcomes.append((started, outcome))
                if outcome == "UNAVAILABLE":
                    return

    def http_client() -> None:
        body = {"image": base64.b64encode(image).decode(), "topK": 3}
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                reply = httpx.post(f"{server.http_url}/v1/classify", json=body, timeout=30)
                outcome = "ok" if reply.status_code == 200 else str(reply.status_code)
            except httpx.ConnectError:
                outcome = "refused"
            except (httpx.RemoteProtocolError, httpx.ReadError):
                outcome = "closed before an answer"  # accepted by the kernel as the listener closed
            with lock:
                outcomes.append((started, outcome))
            if outcome != "ok":
                return

    threads = [threading.Thread(target=grpc_client) for _ in range(4)]
    threads += [threading.Thread(target=http_client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    signalled = time.monotonic()
    server.process.send_signal(15)
    assert server.health() == health_pb2.HealthCheckResponse.NOT_SERVING
    assert httpx.get(f"{server.http_url}/readyz", timeout=5).status_code == 503
    for thread in threads:
        thread.join(60)
    assert server.process.wait(60) == 0, server.log()
    kinds = {outcome for _, outcome in outcomes}
    # Accepted requests all completed ("ok"); the rest were refused by the transport, never cut off.
    assert kinds <= {"ok", "UNAVAILABLE", "refused", "closed before an answer"}, outcomes
    during_delay = [o for started, o in outcomes if signalled + 0.5 < started < signalled + delay_s - 0.5]
    assert during_delay and set(during_delay) == {"ok"}, f"calls during the delay: {during_delay}"
    assert "drained" in server.log()
