"""HTTP health agrees with grpc.health.v1, and a slow request never delays it."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
from grpc_health.v1 import health_pb2
from PIL import Image

from bench.harness import ServerProcess


def test_live_and_ready_agree_with_grpc_health(server: ServerProcess) -> None:
    assert server.health() == health_pb2.HealthCheckResponse.SERVING
    assert httpx.get(f"{server.http_url}/healthz").json() == {"status": "SERVING"}
    ready = httpx.get(f"{server.http_url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "SERVING"}


def test_health_answers_while_a_long_batch_runs(server: ServerProcess, photos: dict[str, bytes]) -> None:
    """Decoding and inference run off the event loop: /healthz returns before a 48-image batch does."""
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(photos["astronaut.png"])).convert("RGB").save(jpeg, format="JPEG", quality=85)
    image = base64.b64encode(jpeg.getvalue()).decode()
    body = {"requests": [{"image": image, "topK": 1}] * 48}
    finished: dict[str, float] = {}

    def batch() -> None:
        httpx.post(f"{server.http_url}/v1/classify:batch", json=body, timeout=120).raise_for_status()
        finished["batch"] = time.monotonic()

    worker = threading.Thread(target=batch)
    worker.start()
    time.sleep(0.3)  # the batch is now being decoded / inferred
    started = time.monotonic()
    assert httpx.get(f"{server.http_url}/healthz", timeout=30).status_code == 200
    health_done = time.monotonic()
    worker.join(120)
    assert "batch" in finished, "the batch request failed"
    assert health_done < finished["batch"], "health waited for the batch"
    print(f"healthz latency during a 48-image batch: {1000 * (health_done - started):.1f} ms; "
          f"batch finished {finished['batch'] - health_done:.2f} s later")
