"""The Open Inference Protocol's REST API (KServe v2 / Triton ``/v2/...``) over the OIP API object.

Every route builds the same proto request the gRPC side receives and calls
it through the gateway's backend (in-process, or forwarded to a
``--grpc-upstream``); bodies are the OIP's own JSON (http_gateway/oip_json.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf.message import Message

from http_gateway.backends import RpcBackend
from http_gateway.calls import rpc_extra
from http_gateway.oip_json import (
    HEADER_LENGTH,
    infer_response_body,
    message_json,
    parse_infer_request,
    parse_json_object,
)
from http_gateway.rpc_routes import call_backend
from inference import grpc_service_pb2 as pb
from service.errors import Unimplemented

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
TAG = "inference (Open Inference Protocol v2)"
# Triton's REST routes for the calls this server leaves out (its http_server.cc), each with the
# gRPC method it stands for: they answer 501 naming that call, as gRPC answers UNIMPLEMENTED,
# rather than a bare 404 that reads like a wrong URL.
UNIMPLEMENTED_ROUTES: tuple[tuple[str, str, str], ...] = tuple(
    (verb, f"/v2/{kind}sharedmemory{region}/{action}", f"{prefix}SharedMemory{action.capitalize()}")
    for kind, prefix in (("system", "System"), ("cuda", "Cuda"))
    for region in ("", "/region/{region}")
    for action, verb in (("status", "GET"), ("register", "POST"), ("unregister", "POST"))
    if not (action == "register" and region == "")
) + tuple(
    (verb, path, method)
    for path, method in (
        ("/v2/trace/setting", "TraceSetting"),
        ("/v2/models/{name}/trace/setting", "TraceSetting"),
        ("/v2/models/{name}/versions/{version}/trace/setting", "TraceSetting"),
        ("/v2/logging", "LogSettings"),
    )
    for verb in ("GET", "POST")
)
# The spec's health answer: 200 for true, a 4xx for false (Triton answers 400).
NOT_READY = 400

_ERRORS: dict[int | str, Any] = {
    "4XX": {"description": 'client error: {"error": "..."}'},
    "5XX": {"description": 'server error: {"error": "..."}'},
}
_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "shape", "datatype"],
                            "properties": {
                                "name": {"type": "string", "example": "IMAGE"},
                                "shape": {"type": "array", "items": {"type": "integer"}, "example": [1, 1]},
                                "datatype": {"type": "string", "example": "BYTES"},
                                "parameters": {"type": "object"},
                                "data": {
                                    "type": "array",
                                    "description": "BYTES elements as base64 strings",
                                    "items": {},
                                },
                            },
                        },
                    },
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string", "example": "PROBABILITIES"},
                                "parameters": {"type": "object", "example": {"classification": 5}},
                            },
                        },
                    },
                },
            }
        },
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "binary data extension: JSON header (Inference-Header-Content-Length bytes), then raw tensors",
        },
    },
}


def add_oip_routes(app: FastAPI, backend: RpcBackend, timeout: float) -> None:
    """The /v2 routes: health, metadata, config, statistics, inference and the repository index."""

    async def call(request: Request, rpc: str, message: Message) -> Any:
        return await call_backend(request, backend, SERVICE.methods_by_name[rpc], message, timeout)

    def route(
        path: str, endpoint: Callable[..., Awaitable[Response]], rpc: str, summary: str, verb: str = "GET", **extra: Any
    ) -> None:
        app.add_api_route(
            path, endpoint, methods=[verb], tags=[TAG], summary=summary, responses=_ERRORS,
            response_model=None, operation_id="oip_" + re.sub(r"\W+", "_", path.strip("/")),
            openapi_extra=rpc_extra(SERVICE.methods_by_name[rpc], **extra),
        )

    async def server_metadata(request: Request) -> JSONResponse:
        return JSONResponse(message_json(await call(request, "ServerMetadata", pb.ServerMetadataRequest())))

    async def server_live(request: Request) -> JSONResponse:
        live = (await call(request, "ServerLive", pb.ServerLiveRequest())).live
        return JSONResponse({"live": live}, status_code=200 if live else NOT_READY)

    async def server_ready(request: Request) -> JSONResponse:
        ready = (await call(request, "ServerReady", pb.ServerReadyRequest())).ready
        return JSONResponse({"ready": ready}, status_code=200 if ready else NOT_READY)

    async def model_metadata(request: Request, name: str, version: str = "") -> JSONResponse:
        reply = await call(request, "ModelMetadata", pb.ModelMetadataRequest(name=name, version=version))
        return JSONResponse(message_json(reply))

    async def model_ready(request: Request, name: str, version: str = "") -> JSONResponse:
        ready = (await call(request, "ModelReady", pb.ModelReadyRequest(name=name, version=version))).ready
        return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else NOT_READY)

    async def model_config(request: Request, name: str, version: str = "") -> JSONResponse:
        reply = await call(request, "ModelConfig", pb.ModelConfigRequest(name=name, version=version))
        return JSONResponse(message_json(reply.config))

    async def model_statistics(request: Request, name: str = "", version: str = "") -> JSONResponse:
        reply = await call(request, "ModelStatistics", pb.ModelStatisticsRequest(name=name, version=version))
        return JSONResponse(message_json(reply))

    async def model_infer(request: Request, name: str, version: str = "") -> Response:
        body = await request.body()
        header_length = request.headers.get(HEADER_LENGTH)
        # Parsing base64 images is CPU work: keep it off the event loop.
        parsed = await asyncio.to_thread(parse_infer_request, body, header_length, name, version)
        reply = await call(request, "ModelInfer", parsed.message)
        content, json_length = infer_response_body(reply, parsed)
        if json_length is None:
            return Response(content, media_type="application/json")
        return Response(
            content, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(json_length)}
        )

    async def repository_index(request: Request) -> JSONResponse:
        body = await request.body()
        message = pb.RepositoryIndexRequest()
        if body.strip():
            parsed = await asyncio.to_thread(parse_json_object, body)
            message.ready = bool(parsed.get("ready", False))
        reply = await call(request, "RepositoryIndex", message)
        return JSONResponse([message_json(m) for m in reply.models])

    async def model_load(request: Request, name: str) -> JSONResponse:
        await call(request, "RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name=name))
        return JSONResponse({})

    async def model_unload(request: Request, name: str) -> JSONResponse:
        await call(request, "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name=name))
        return JSONResponse({})

    route("/v2", server_metadata, "ServerMetadata", "server metadata: name, version, extensions")
    route("/v2/health/live", server_live, "ServerLive", "liveness (open: no token needed)")
    route("/v2/health/ready", server_ready, "ServerReady", "readiness: every model loaded and warm (open: no token needed)")
    route("/v2/models/stats", model_statistics, "ModelStatistics", "inference statistics of every model")
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        route(base, model_metadata, "ModelMetadata", "model metadata: versions, inputs, outputs")
        route(base + "/ready", model_ready, "ModelReady", "model readiness")
        route(base + "/config", model_config, "ModelConfig", "model configuration (Triton's format)")
        route(base + "/stats", model_statistics, "ModelStatistics", "inference statistics: counts, queue and compute times")
        route(base + "/infer", model_infer, "ModelInfer", "inference: BYTES IMAGE in, FP32 PROBABILITIES or classification out",
              verb="POST", requestBody=_INFER_BODY)
    route("/v2/repository/index", repository_index, "RepositoryIndex", "the models and their state", verb="POST")
    route("/v2/repository/models/{name}/load", model_load, "RepositoryModelLoad",
          "load or reload a model (admin token when tokens are set)", verb="POST")
    route("/v2/repository/models/{name}/unload", model_unload, "RepositoryModelUnload",
          "unload a model (admin token when tokens are set)", verb="POST")
    for verb, path, method in UNIMPLEMENTED_ROUTES:
        app.add_api_route(
            path, _unimplemented(f"{SERVICE.full_name}/{method}"), methods=[verb], include_in_schema=False,
            openapi_extra=rpc_extra(f"/{SERVICE.full_name}/{method}"),  # undeclared calls: the table's default
        )


def _unimplemented(call: str) -> Callable[..., Awaitable[Response]]:
    """The words gRPC's answer uses (service/grpc_server/servicers.py), as HTTP 501."""

    async def refuse() -> Response:
        raise Unimplemented(f"{call} is not implemented by this server")

    return refuse

