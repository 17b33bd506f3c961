"""Per-request plumbing: request id, bearer auth (health excepted) and metrics, in one place."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from http_gateway.errors import error_response
from service.auth import AdminVerifier, TokenVerifier
from service.errors import ServiceError
from service.metrics import REQUEST_SECONDS, REQUESTS
from service.request_context import REQUEST_ID_HEADER, accept_request_id, request_id

logger = logging.getLogger("classify.access")

# Health, and the try-it page's static files (its API calls carry the token the person types in).
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/", "/try-it/try_it.js", "/try-it/try_it.css"}
)


class CallMiddleware:
    """Outermost middleware: every response, errors included, carries the request id.

    Requests whose path matches one of ``admin_paths`` (model control) also need an admin token.
    With ``traced``, the request's SERVER span (FastAPI's) records the request id.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier | None,
        admin: AdminVerifier | None = None,
        admin_paths: Iterable[re.Pattern[str]] = (),
        traced: bool = False,
    ) -> None:
        self.app = app
        self.traced = traced
        self.verifier = verifier
        self.admin = admin
        self.admin_paths = tuple(admin_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        rid = accept_request_id(headers.get(REQUEST_ID_HEADER))
        request_id.set(rid)
        if self.traced:
            trace.get_current_span().set_attribute("classify.request_id", rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            try:
                if self.verifier is not None and scope["path"] not in OPEN_PATHS:
                    self.verifier.check(headers.get("authorization"))
                if self.admin is not None and any(p.match(scope["path"]) for p in self.admin_paths):
                    self.admin.check(headers.get("authorization"))
            except ServiceError as error:
                await error_response(error, scope["path"])(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            # Label by route template (/v1/models/{name}), never the raw path: bounded cardinality.
            label = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            REQUESTS.labels("http", label, str(status)).inc()
            REQUEST_SECONDS.labels("http", label).observe(elapsed)
            logger.info("http %s %s -> %d in %.1f ms", scope["method"], scope["path"], status, 1000 * elapsed)
