"""Composition root: builds the core once and hands it to the transports."""

from __future__ import annotations

import asyncio
import logging
import signal

import torch

from service.api.classifier_v1 import ClassifierServiceApi
from service.api.tutorial import TutorialClassifierApi
from service.core.batching import BatchingConfig
from service.core.engine import Engine, EngineRef
from service.core.errors import StartupError
from service.core.images import ImageLimits
from service.core.models import ModelSpec, load_model
from service.grpc_server.server import GrpcServer
from service.settings import Settings

logger = logging.getLogger(__name__)


def build_engine(settings: Settings) -> Engine:
    """Load and verify the model, then warm it up (blocking; run off the event loop)."""
    # One explicit thread budget: inference gets torch_threads, decoding its
    # own pool; inter-op parallelism is unused by these networks.
    torch.set_num_threads(settings.torch_threads)
    spec = ModelSpec(
        name="resnet18",
        architecture="resnet18",
        weights=settings.weights,
        labels_file=settings.labels,
        weights_sha256=settings.weights_sha256,
    )
    engine = Engine(
        [load_model(spec)],
        limits=ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels),
        batching=BatchingConfig(
            max_batch_size=settings.batch_max_size,
            max_delay_s=settings.batch_max_delay_ms / 1000.0,
            max_queue=settings.queue_size,
        ),
        decode_workers=settings.decode_workers,
        max_batch_images=settings.max_batch_images,
    )
    engine.warm_up()
    return engine


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT, then drain. Returns the process exit status."""
    logger.info("starting with settings:\n%s", settings.summary())
    engine_ref = EngineRef()
    grpc_server = GrpcServer(
        ClassifierServiceApi(engine_ref),
        TutorialClassifierApi(engine_ref),
        max_message_bytes=settings.max_request_bytes,
    )
    grpc_port = grpc_server.listen(settings.host, settings.grpc_port)
    await grpc_server.start()
    logger.info("gRPC listening on %s:%d (health NOT_SERVING until the model is warm)", settings.host, grpc_port)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    loading = loop.run_in_executor(None, build_engine, settings)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({loading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not loading.done():
        logger.info("stopped while loading the model")
        await grpc_server.stop(0)
        return 0
    try:
        engine = loading.result()
    except StartupError as error:
        logger.error("cannot start: %s", error)
        await grpc_server.stop(0)
        return 2
    engine_ref.set(engine)
    await grpc_server.set_serving()
    for info in engine.models:
        logger.info("serving model %s (%s) weights sha256=%s", info.name, info.architecture, info.weights_sha256)
    logger.info("ready")

    await stopped
    logger.info("shutting down: health NOT_SERVING, draining for up to %.1f s", settings.grace_period_s)
    await grpc_server.stop(settings.grace_period_s)
    await loop.run_in_executor(None, engine.close)
    logger.info("stopped")
    return 0
