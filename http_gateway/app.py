"""The gateway application: routes from the proto, the tutorial's routes, health, limits."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from google.protobuf.descriptor import ServiceDescriptor
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from http_gateway.backends import RpcBackend
from http_gateway.calls import RouteCalls, rpc_extra
from http_gateway.errors import install_error_handlers
from http_gateway.json_schema import component_schemas
from http_gateway.limits import BodyLimitMiddleware
from http_gateway.middleware import CallMiddleware
from http_gateway.oip_routes import add_oip_routes
from http_gateway.routes import http_routes
from http_gateway.rpc_routes import add_rpc_routes, message_to_json
from http_gateway.try_it import PAGES, add_try_it_page
from http_gateway.tutorial_routes import add_tutorial_routes
from service.auth import Authorizer
from service.contract.services import CLASSIFIER_SERVICE, PROBE_METHODS
from service.tracing import Tracing

SERVICES: tuple[ServiceDescriptor, ...] = (CLASSIFIER_SERVICE,)


def create_app(
    backend: RpcBackend,
    *,
    max_request_bytes: int,
    request_timeout_s: float,
    authorizer: Authorizer | None = None,
    docs: bool = True,
    services: Sequence[ServiceDescriptor] = SERVICES,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the gateway over ``backend`` (in-process API objects or a gRPC upstream).

    With ``tracing``, FastAPI's own OpenTelemetry support makes each request's SERVER span
    (HTTP semantic conventions, W3C context from the headers); health, /metrics and the
    try-it page's files are not traced. Without it FastAPI traces nothing.
    """
    calls = RouteCalls()  # which RPC a request calls: for access, and whether to trace it
    app = FastAPI(
        telemetry={
            "tracer_provider": tracing.provider if tracing is not None else None,
            "tracing": tracing is not None,
            "metrics": False,  # Prometheus has these (/metrics)
            "logs": False,  # errors are logged by the service's own handlers
            "operation_spans": False,  # one span a request; the core's spans say where the time went
            "auto_configure": False,  # no exporter from FASTAPI_OTEL_AUTO_CONFIGURE: service/tracing.py owns export
            "exclude": partial(_untraced, calls=calls),
        },
        title="classify",
        summary="Image classification: top-K ImageNet classes over HTTP (derived from classify.proto)",
        version="1",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    calls.routes = app.router.routes  # the app's own list: the routes added below are seen too
    install_error_handlers(app)
    routes = http_routes(services)
    add_rpc_routes(app, routes, backend, request_timeout_s)
    add_tutorial_routes(app, backend, request_timeout_s)
    add_oip_routes(app, backend, request_timeout_s)
    _add_health_routes(app, backend)
    add_try_it_page(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)
    # Added last, so it runs first: access is checked before any body is read.
    app.add_middleware(
        CallMiddleware, authorizer=authorizer or Authorizer(None, None), calls=calls, traced=tracing is not None
    )
    app.add_route("/metrics", _metrics, include_in_schema=False)

    requests = [r.method.input_type for r in routes]
    responses = [r.method.output_type for r in routes] + [status_pb2.Status.DESCRIPTOR]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            loose = component_schemas(requests, emitted_defaults=False)
            strict = component_schemas(responses, emitted_defaults=True)
            # A message used both ways gets the request form (no `required`).
            schemas.update({**strict, **loose})
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _untraced(scope: MutableMapping[str, Any], calls: RouteCalls) -> bool:
    """Probes (health, the OIP's liveness and readiness), /metrics and the try-it page's files make no spans."""
    path = scope.get("path", "")
    if path == "/metrics" or path in PAGES:
        return True
    return scope.get("type") == "http" and calls.method(scope) in PROBE_METHODS


async def _metrics(request: Request) -> Response:
    """Prometheus text exposition of every metric of this process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _health_json(serving: bool) -> dict[str, Any]:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    return message_to_json(health_pb2.HealthCheckResponse(status=status))


def _add_health_routes(app: FastAPI, backend: RpcBackend) -> None:
    check = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]

    @app.get("/healthz", tags=["health"], summary="liveness: the process answers", openapi_extra=rpc_extra(check))
    async def healthz() -> JSONResponse:
        return JSONResponse(_health_json(True))

    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"description": "not ready: loading or shutting down", "content": {"application/json": {}}},
        404: {"description": "no such model (with ?model=NAME)", "content": {"application/json": {}}},
    }

    @app.get(
        "/readyz", tags=["health"], summary="readiness: the model is loaded and warm (as grpc.health.v1)",
        responses=not_ready, openapi_extra=rpc_extra(check),
    )
    async def readyz(model: str = "") -> JSONResponse:
        """With ``?model=NAME``: whether that model has a ready version (as grpc.health.v1 service models/NAME)."""
        ready = await backend.ready(model)
        return JSONResponse(_health_json(ready), status_code=200 if ready else 503)
