"""The integration tier's one service: `classify serve`'s own composition root, in this process, on port 0.

It runs service.roots.serve.serve on a thread with its own event loop (real
grpcio, real uvicorn, the default ONNX Runtime backend, random-init ResNet18
weights), started once per session and shared by every integration test, which
therefore must not change its state. Tests that need other settings or a
process of their own belong to tests/e2e/.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from bench.harness import Endpoints
from service.roots.serve import serve
from service.settings import Settings


@dataclass
class InProcessService(Endpoints):
    """The shared service's addresses, with the same names as bench.harness.ServerProcess."""

    settings: Settings
    grpc_port: int = 0
    http_port: int = 0
    status: int | None = None  # serve()'s exit status once it returned
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _listening: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """The service's thread: serve() until stop() sets its stop event."""

        async def main() -> int:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            return await serve(self.settings, stop=self._stop, listening=self._bound)

        self.status = asyncio.run(main())
        self._listening.set()  # also when serve() returned before listening

    def _bound(self, grpc_port: int, http_port: int) -> None:
        self.grpc_port, self.http_port = grpc_port, http_port
        self._listening.set()

    def wait_serving(self, timeout: float = 120.0) -> None:
        if not self._listening.wait(timeout) or self.status is not None:
            raise RuntimeError(f"the in-process service did not start (exit status {self.status})")
        deadline = time.monotonic() + timeout
        while self.status is None and time.monotonic() < deadline:
            try:
                if self.health() == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the in-process service is not SERVING after {timeout} s (exit status {self.status})")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self.status is None:
            self._loop.call_soon_threadsafe(self._stop.set)


@pytest.fixture(scope="session")
def server(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    """Overrides the subprocess `server` of tests/conftest.py for this tier."""
    settings = Settings(
        host="127.0.0.1", grpc_port=0, http_port=0, weights=weights,
        cache_dir=tmp_path_factory.mktemp("graphs"), max_request_bytes=8 << 20,
        grace_period_s=2, shutdown_delay_s=0, log_format="text",
    )
    service = InProcessService(settings)
    thread = threading.Thread(target=service.run, name="in-process-service", daemon=True)
    thread.start()
    service.wait_serving()
    yield service
    service.stop()
    thread.join(60)
    assert service.status == 0, f"the in-process service exited with {service.status}"
