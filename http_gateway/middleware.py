"""Per-request plumbing: request id, bearer auth (health excepted) and metrics, in one place."""

from __future__ import annotations

import logging
import time

from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from http_gateway.calls import RouteCalls
from http_gateway.errors import error_response
from http_gateway.try_it import PAGES
from service.auth import Authorizer
from service.errors import ServiceError
from service.metrics import REQUEST_SECONDS, REQUESTS
from service.request_context import REQUEST_ID_HEADER, accept_request_id, request_id

logger = logging.getLogger("classify.access")

class CallMiddleware:
    """Outermost middleware: every response, errors included, carries the request id.

    Access: a route calling an RPC is checked against the access table for that
    RPC (``calls``); the try-it page's files are open (its API calls carry the
    token the person types in); any other route (/metrics, /docs, unknown paths)
    needs a token once tokens are configured.
    With ``traced``, the request's SERVER span (FastAPI's) records the request id.
    """

    def __init__(self, app: ASGIApp, authorizer: Authorizer, calls: RouteCalls, traced: bool = False) -> None:
        self.app = app
        self.authorizer = authorizer
        self.calls = calls
        self.traced = traced

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
                method = self.calls.method(scope)
                if method is not None:
                    self.authorizer.check(method, headers.get("authorization"))
                elif scope["path"] not in PAGES:
                    self.authorizer.check_page(headers.get("authorization"))
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
