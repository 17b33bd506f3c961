"""The `classify gateway` composition root: the HTTP gateway alone, in front of a remote `classify serve`.

It holds no model: nothing here imports the core, torch, ONNX Runtime or Pillow
(tests/unit/test_architecture.py checks sys.modules).
"""

from __future__ import annotations

import asyncio
import logging

from http_gateway.app import create_app
from http_gateway.backends import GrpcUpstreamBackend
from http_gateway.server import HttpServer
from service.errors import StartupError
from service.roots.common import authorizer, check_listen, stop_event, tls_files
from service.settings import Settings
from service.tracing import GATEWAY_SERVICE_NAME, configure

logger = logging.getLogger(__name__)


async def serve_gateway(settings: Settings) -> int:
    """The HTTP gateway alone, in front of a remote `classify serve` (--grpc-upstream)."""
    if not settings.grpc_upstream:
        raise StartupError("classify gateway needs --grpc-upstream HOST:PORT")
    check_listen(settings.host, settings.http_port, "--http-port")
    logger.info("starting gateway with settings:\n%s", settings.summary())
    tracing = configure(settings, GATEWAY_SERVICE_NAME)  # None (and no SDK imported) unless OTEL_* switch it on
    backend = GrpcUpstreamBackend(settings.grpc_upstream, settings.max_request_bytes, tracing)
    app = create_app(
        backend,
        max_request_bytes=settings.max_request_bytes,
        request_timeout_s=settings.request_timeout_s,
        authorizer=authorizer(settings),
        docs=settings.docs,
        tracing=tracing,
    )
    http_server = HttpServer(app, settings.host, settings.http_port, settings.grace_period_s, tls_files(settings))
    http_task = asyncio.create_task(http_server.serve())
    logger.info("HTTP gateway on %s:%d -> gRPC %s", settings.host, http_server.port, settings.grpc_upstream)
    await stop_event().wait()
    http_server.stop()
    await http_task
    await backend.close()
    if tracing is not None:  # the last spans, within SHUTDOWN_TIMEOUT_S
        await asyncio.get_running_loop().run_in_executor(None, tracing.shutdown)
    return 0
