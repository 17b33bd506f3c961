"""Running the gateway with uvicorn inside the service's own event loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """The gateway on a socket bound up front (so port 0 works and the port is known)."""

    def __init__(self, app: FastAPI, host: str, port: int, grace_period_s: float) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,  # keep the service's logging configuration
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(grace_period_s)),
        )
        self._server = _EmbeddedUvicorn(config)

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._socket])

    def stop(self) -> None:
        """Stop accepting; in-flight requests finish within the grace period."""
        self._server.should_exit = True
