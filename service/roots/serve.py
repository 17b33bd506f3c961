"""The `classify serve` composition root: builds the core once and hands it to both transports."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

import grpc

from http_gateway.app import create_app
from http_gateway.server import HttpServer, TlsFiles
from service.api.classifier_v1 import ClassifierServiceApi
from service.api.dispatch import InProcessBackend
from service.api.inference_v2 import InferenceServiceApi
from service.api.tutorial import TutorialClassifierApi
from service.contract.services import SERVED_SERVICES
from service.core.batching import BatchingConfig
from service.core.control import ControlMode, ControlRef, ModelControl
from service.core.engine import Engine, EngineRef
from service.core.images import ImageLimits
from service.core.malloc_tuning import keep_freed_memory_in_the_heap
from service.core.model_options import model_specs
from service.core.models import BackendOptions, LoadedModel, load_model
from service.core.threads import run_on_exiting_thread
from service.core.tracing import CoreTracer
from service.errors import StartupError
from service.grpc_server.server import GrpcServer
from service.roots.common import authorizer, check_listen, stop_event, tls_files
from service.settings import Settings
from service.tracing import SERVE_SERVICE_NAME, Tracing, configure

logger = logging.getLogger(__name__)


def load_models(settings: Settings) -> list[LoadedModel]:
    """The configured models, verified and loaded on their backends (blocking)."""
    if settings.malloc_tuning:
        keep_freed_memory_in_the_heap()
    if settings.model_repository is not None and not settings.model:
        return []  # the repository's models only
    specs = model_specs(
        settings.model,
        resnet18_weights=settings.weights,
        resnet18_sha256=settings.weights_sha256,
        default_labels=settings.labels,
        # An explicit --weights that is missing is a mistake to report, not to paper over.
        allow_fallback="weights" not in settings.model_fields_set,
        default_backend=settings.backend,
        cache_dir=settings.cache_dir,
    )
    return [load_model(spec, _backend_options(settings)) for spec in specs]


def _backend_options(settings: Settings) -> BackendOptions:
    return BackendOptions(cache_dir=settings.cache_dir, threads=settings.torch_threads, spin=settings.onnx_spin)


def build_engine(settings: Settings, tracing: Tracing | None = None) -> tuple[Engine, ModelControl]:
    """Load and verify the models, warm them up, then load the model repository (blocking; run off the event loop)."""
    engine = Engine(
        load_models(settings),
        limits=ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
        batching=BatchingConfig(
            max_batch_size=settings.batch_max_size,
            max_delay_s=settings.batch_max_delay_ms / 1000.0,
        ),
        decode_workers=settings.decode_workers,
        max_batch_images=settings.max_batch_images,
        max_in_flight=settings.queue_size,
        jpeg_draft=settings.jpeg_draft,
        dynamic=settings.model_repository is not None,
        tracer=CoreTracer(tracing.provider) if tracing is not None else None,
    )
    engine.warm_up()
    control = ModelControl(
        engine.lifecycle,
        settings.model_repository,
        ControlMode(settings.model_control),
        backend_options=_backend_options(settings),
        default_backend=settings.backend,
    )
    try:
        control.load_repository()
        if not engine.models and control.mode is ControlMode.NONE:
            raise StartupError(f"model repository {settings.model_repository} holds no model version to serve")
    except BaseException:
        engine.close()
        raise
    return engine, control


def _grpc_credentials(tls: TlsFiles | None) -> grpc.ServerCredentials | None:
    if tls is None:
        return None
    try:
        pair = (tls.key.read_bytes(), tls.cert.read_bytes())
        client_ca = tls.client_ca.read_bytes() if tls.client_ca else None
    except OSError as error:
        raise StartupError(f"TLS files cannot be read: {error}") from None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


async def serve(
    settings: Settings, *, stop: asyncio.Event | None = None, listening: Callable[[int, int], None] | None = None
) -> int:
    """gRPC and HTTP over one core until SIGTERM/SIGINT (or ``stop``), then drain. Returns the exit status.

    ``stop`` replaces the signal handlers (an in-process service, as the integration tests run it);
    ``listening(grpc_port, http_port)`` is told the bound ports (port 0 picks free ones).
    """
    check_listen(settings.host, settings.grpc_port, "--grpc-port")
    check_listen(settings.host, settings.http_port, "--http-port")
    logger.info("starting with settings:\n%s", settings.summary())
    tracing = configure(settings, SERVE_SERVICE_NAME)  # None (and no SDK imported) unless OTEL_* switch it on
    access, tls = authorizer(settings), tls_files(settings)
    engine_ref, control_ref = EngineRef(), ControlRef()
    classifier, tutorial = ClassifierServiceApi(engine_ref, control_ref), TutorialClassifierApi(engine_ref)
    inference = InferenceServiceApi(engine_ref, control_ref)
    grpc_server = GrpcServer(
        classifier,
        tutorial,
        inference,
        max_message_bytes=settings.max_request_bytes,
        authorizer=access,
        reflection_enabled=settings.reflection,
        tracing=tracing,
    )
    grpc_port = grpc_server.listen(settings.host, settings.grpc_port, _grpc_credentials(tls))
    gateway = create_app(
        InProcessBackend(dict(zip(SERVED_SERVICES, (classifier, tutorial, inference), strict=True)), engine_ref),
        max_request_bytes=settings.max_request_bytes,
        request_timeout_s=settings.request_timeout_s,
        authorizer=access,
        docs=settings.docs,
        tracing=tracing,
    )
    http_server = HttpServer(gateway, settings.host, settings.http_port, settings.grace_period_s, tls)
    await grpc_server.start()
    http_task = asyncio.create_task(http_server.serve())
    logger.info(
        "listening: gRPC %s:%d, HTTP %s:%d%s%s (not ready until the model is warm)",
        settings.host, grpc_port, settings.host, http_server.port,
        ", TLS" + (" with client certificates" if tls and tls.client_ca else "") if tls else "",
        ", bearer tokens required" if access.tokens_required else "",
    )

    if listening is not None:
        listening(grpc_port, http_server.port)
    stop = stop or stop_event()
    loop = asyncio.get_running_loop()
    # Loaded on a thread that exits: it leaves no OpenMP team behind (service/core/threads.py).
    loading = asyncio.wrap_future(run_on_exiting_thread(build_engine, settings, tracing))
    stopped = asyncio.ensure_future(stop.wait())
    pending: set[asyncio.Future[Any]] = {loading, stopped}
    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    engine: Engine | None = None
    polling: asyncio.Task[None] | None = None
    status = 0
    if loading.done():
        try:
            engine, control = loading.result()
        except StartupError as error:
            logger.error("cannot start: %s", error)
            status = 2
    if engine is not None:
        engine_ref.set(engine)
        control_ref.set(control)
        _report_model_health(engine, grpc_server, loop)
        await grpc_server.set_serving()
        for info in engine.models:
            logger.info(
                "serving model %s version %s (%s) weights sha256=%s",
                info.name, info.version, info.architecture, info.weights_sha256,
            )
        if control.mode is ControlMode.POLL:
            polling = asyncio.create_task(control.poll_forever(settings.repository_poll_s))
        logger.info("ready (model control: %s)", control.mode.value)
        await stopped
    if polling is not None:
        polling.cancel()
    await _drain(settings, engine, engine_ref, grpc_server, http_server, http_task)
    if engine is not None:
        await loop.run_in_executor(None, engine.close)
    if tracing is not None:  # the last spans, within SHUTDOWN_TIMEOUT_S
        await loop.run_in_executor(None, tracing.shutdown)
    # 5. Exit promptly. The interpreter's last garbage collections would walk every object the
    #    ML libraries created: 2-9 s after this point, 24 s on a busy 2-core machine, all of it
    #    inside a pod's grace period. Frozen objects are never collected, which no longer matters.
    gc.freeze()
    logger.info("stopped")
    return status


async def _drain(
    settings: Settings,
    engine: Engine | None,
    engine_ref: EngineRef,
    grpc_server: GrpcServer,
    http_server: HttpServer,
    http_task: asyncio.Task[None],
) -> None:
    """Leave a load balancer's rotation without failing a call (docs/scaling-out.md has the timeline)."""
    loop = asyncio.get_running_loop()
    # 1. Report NOT_SERVING at once: grpc.health.v1 (every service) and /readyz, the
    #    OIP's ServerReady and classify_model_ready. Balancers' health checks and the
    #    kubelet's readiness probe take this replica out of rotation.
    logger.info(
        "shutting down: health NOT_SERVING, still serving for %.1f s, then draining for up to %.1f s",
        settings.shutdown_delay_s, settings.grace_period_s,
    )
    engine_ref.drain()
    await grpc_server.set_not_serving()
    at_signal = engine.in_flight if engine is not None else 0
    admitted_before = engine.admitted if engine is not None else 0
    # 2. Keep serving new calls for --shutdown-delay-s, long enough for health checks
    #    to notice (deploy/envoy checks every second; deploy/kubernetes sets 5 s for
    #    endpoint propagation). A call refused now would fail behind a balancer: Envoy
    #    cannot retry an UNAVAILABLE that follows response headers (envoyproxy/envoy#17629).
    #    A server stopped before it ever served is in nobody's rotation: no delay.
    if engine is not None:
        await asyncio.sleep(settings.shutdown_delay_s)
    # 3. Stop accepting: gRPC sends GOAWAY (a stream that crosses it is refused with
    #    REFUSED_STREAM, which clients and Envoy retry elsewhere) and HTTP closes its
    #    listener and idle keep-alive connections. One deadline from here for both.
    deadline = loop.time() + settings.grace_period_s
    during_delay = (engine.admitted - admitted_before) if engine is not None else 0
    http_server.stop()
    grpc_stopped = asyncio.create_task(grpc_server.stop(settings.grace_period_s))
    # 4. Finish what was admitted (calls in flight get the grace period), then the
    #    listeners' own shutdowns end and the engine closes: exit 0.
    if engine is not None:
        drained = await engine.drained(max(0.0, deadline - loop.time()))
        logger.info(
            "drained %d in-flight images%s; %d more were admitted during the %.1f s delay",
            at_signal, "" if drained else " (grace period ran out)", during_delay, settings.shutdown_delay_s,
        )
    await asyncio.gather(grpc_stopped, http_task)


def _report_model_health(engine: Engine, grpc_server: GrpcServer, loop: asyncio.AbstractEventLoop) -> None:
    """Keep grpc.health.v1's ``models/NAME`` in step with each model's state, from any thread."""

    def update(name: str) -> None:
        serving = engine.registry.current(name) is not None
        asyncio.ensure_future(grpc_server.set_model_serving(name, serving))

    def on_change(name: str) -> None:
        loop.call_soon_threadsafe(update, name)

    engine.registry.add_listener(on_change)
    for name in engine.registry.names():
        update(name)
