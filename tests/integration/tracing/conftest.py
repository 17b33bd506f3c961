"""One in-process service per module, traced into the SDK's in-memory exporter: real grpcio and uvicorn on port 0,
the real engine on random-init ResNet18 weights (torch backend: no ONNX export to wait for)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from http_gateway.app import create_app
from http_gateway.server import HttpServer
from service.api.classifier_v1 import ClassifierServiceApi
from service.api.dispatch import InProcessBackend
from service.api.inference_v2 import InferenceServiceApi
from service.api.tutorial import TutorialClassifierApi
from service.contract.services import SERVED_SERVICES
from service.core.control import ControlRef
from service.core.engine import EngineRef
from service.grpc_server.server import GrpcServer
from service.roots.serve import build_engine
from service.settings import Settings
from service.tracing import Tracing, configure


@dataclass
class TracedService:
    grpc_address: str
    http_url: str
    tracing: Tracing
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        self.tracing.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        self.tracing.provider.force_flush()
        self.exporter.clear()


@pytest.fixture(scope="module")
def service(weights: Path) -> Iterator[TracedService]:
    exporter = InMemorySpanExporter()
    settings = Settings(
        otel_traces_exporter="otlp", otel_bsp_schedule_delay=50, weights=weights, model=["resnet18"], backend="torch",
        host="127.0.0.1", grpc_port=0, http_port=0, batch_max_delay_ms=20, decode_workers=2, torch_threads=1,
    )
    tracing = configure(settings, "classify", exporter)
    assert tracing is not None
    started = threading.Event()
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    addresses: list[str] = []
    failure: list[BaseException] = []

    async def main() -> None:
        engine_ref, control_ref = EngineRef(), ControlRef()
        classifier = ClassifierServiceApi(engine_ref, control_ref)
        tutorial, inference = TutorialClassifierApi(engine_ref), InferenceServiceApi(engine_ref, control_ref)
        grpc_server = GrpcServer(classifier, tutorial, inference, max_message_bytes=8 << 20, tracing=tracing)
        grpc_port = grpc_server.listen("127.0.0.1", 0)
        app = create_app(
            InProcessBackend(dict(zip(SERVED_SERVICES, (classifier, tutorial, inference), strict=True)), engine_ref),
            max_request_bytes=8 << 20, request_timeout_s=30, tracing=tracing,
        )
        http_server = HttpServer(app, "127.0.0.1", 0, 1.0)
        engine, control = await asyncio.get_running_loop().run_in_executor(None, build_engine, settings, tracing)
        engine_ref.set(engine)
        control_ref.set(control)
        await grpc_server.start()
        await grpc_server.set_serving()
        http_task = asyncio.create_task(http_server.serve())
        stop.append((asyncio.get_running_loop(), asyncio.Event()))
        addresses.extend([f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_server.port}"])
        started.set()
        await stop[0][1].wait()
        http_server.stop()
        await asyncio.gather(grpc_server.stop(1), http_task)
        engine.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as error:  # noqa: BLE001 (reported to the test)
            failure.append(error)
            started.set()

    thread = threading.Thread(target=run, name="traced-service", daemon=True)
    thread.start()
    assert started.wait(180), "the in-process service did not start"
    if failure:
        raise failure[0]
    yield TracedService(addresses[0], addresses[1], tracing, exporter)
    loop, stopped = stop[0]
    loop.call_soon_threadsafe(stopped.set)
    thread.join(30)
    tracing.shutdown()
