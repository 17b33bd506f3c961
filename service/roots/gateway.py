"""The `classify gateway` composition root: the HTTP gateway alone, in front of a remote `classify serve`.

It holds no model: nothing here imports the core, torch, ONNX Runtime or Pillow
(tests/test_architecture.py checks sys.modules).
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

logger = logging.getLogger(__name__)


async def serve_gateway(settings: Settings) -> int:
    """The HTTP gateway alone, in front of a remote `classify serve` (--grpc-upstream)."""
    if not settings.grpc_upstream:
        raise StartupError("classify gateway needs --grpc-upstream HOST:PORT")
    check_listen(settings.host, settings.http_port, "--http-port")
    logger.info("starting gateway with settings:\n%s", settings.summary())
    backend = GrpcUpstreamBackend(settings.grpc_upstream, settings.max_request_bytes)
    app = create_app(
        backend,
        max_request_bytes=settings.max_request_bytes,
        request_timeout_s=settings.request_timeout_s,
        authorizer=authorizer(settings),
        docs=settings.docs,
    )
    http_server = HttpServer(app, settings.host, settings.http_port, settings.grace_period_s, tls_files(settings))
    http_task = asyncio.create_task(http_server.serve())
    logger.info("HTTP gateway on %s:%d -> gRPC %s", settings.host, http_server.port, settings.grpc_upstream)
    await stop_event().wait()
    http_server.stop()
    await http_task
    await backend.close()
    return 0
