"""FastAPI endpoints for annotated RPCs: proto3 JSON in, the RPC, proto3 JSON out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from starlette.datastructures import UploadFile

from http_gateway.backends import RpcBackend
from http_gateway.calls import rpc_extra
from http_gateway.json_schema import Schema, field_schema, schema_ref
from http_gateway.routes import HttpRoute
from service.errors import Cancelled, InvalidArgument

Endpoint = Callable[[Request], Awaitable[JSONResponse]]
UPLOAD_SUFFIX = ":upload"
UPLOAD_PART = "file"


def message_to_json(message: Message, *, proto_names: bool = False) -> dict[str, Any]:
    """Proto3 JSON with every field present, so clients never miss a zero (class 0, probability 0)."""
    return json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=proto_names,
    )


def _parse_json(body: bytes, message_class: type[Message]) -> Message:
    try:
        return json_format.Parse(body or b"{}", message_class(), ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise InvalidArgument(f"invalid JSON request: {error}") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidArgument(f"invalid JSON request: {error}") from None


def _parse_fields(values: dict[str, Any], message_class: type[Message]) -> Message:
    """Path, query and form values (strings) into a message, by JSON or proto field names."""
    try:
        return json_format.ParseDict(values, message_class(), ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise InvalidArgument(f"invalid request parameter: {error}") from None


async def call_backend(
    request: Request, backend: RpcBackend, method: MethodDescriptor, message: Message, timeout: float
) -> Message:
    """Call the RPC, but give up (499) as soon as the client disconnects: its work is cancelled."""
    call = asyncio.ensure_future(backend.call(method, message, timeout))

    async def client_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait({call, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not call.done():
        call.cancel()
        raise Cancelled("client disconnected")
    return call.result()


def _json_endpoint(route: HttpRoute, backend: RpcBackend, timeout: float) -> Endpoint:
    message_class = GetMessageClass(route.method.input_type)

    async def endpoint(request: Request) -> JSONResponse:
        values = {**request.query_params, **request.path_params}
        if route.body == "*":
            body = await request.body()
            # Parsing a large base64 image is CPU work: keep it off the event loop.
            message = await asyncio.to_thread(_parse_json, body, message_class)
            if values:
                message.MergeFrom(_parse_fields(values, message_class))
        else:
            message = _parse_fields(values, message_class)
        response = await call_backend(request, backend, route.method, message, timeout)
        return JSONResponse(message_to_json(response))

    return endpoint


def _upload_endpoint(route: HttpRoute, field: FieldDescriptor, backend: RpcBackend, timeout: float) -> Endpoint:
    message_class = GetMessageClass(route.method.input_type)
    form_fields = len(route.method.input_type.fields)

    async def endpoint(request: Request) -> JSONResponse:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidArgument(f"send multipart/form-data with the image in a part named {UPLOAD_PART!r}")
        async with request.form(max_files=1, max_fields=form_fields) as form:
            upload = form.get(UPLOAD_PART)
            if not isinstance(upload, UploadFile):
                raise InvalidArgument(f"multipart part {UPLOAD_PART!r} with the image file is required")
            data = await upload.read()
            values = {**request.query_params, **{k: v for k, v in form.items() if k != UPLOAD_PART}}
        message = _parse_fields(values, message_class)
        setattr(message, field.name, data)
        response = await call_backend(request, backend, route.method, message, timeout)
        return JSONResponse(message_to_json(response))

    return endpoint


def error_responses() -> dict[int | str, Any]:
    """OpenAPI responses for errors: every 4xx/5xx body is a google.rpc.Status."""
    status = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}}}
    return {
        "4XX": {"description": "client error (google.rpc.Status)", **status},
        "5XX": {"description": "server error (google.rpc.Status)", **status},
    }


def _responses(output: Descriptor) -> dict[int | str, Any]:
    return {
        200: {"description": "OK", "content": {"application/json": {"schema": schema_ref(output)}}},
        **error_responses(),
    }


def _parameters(route: HttpRoute) -> list[Schema]:
    fields = route.method.input_type.fields_by_name
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": field_schema(fields[name])}
        for name in route.path_fields
    ]
    parameters += [
        {"name": f.json_name, "in": "query", "required": False, "schema": field_schema(f)}
        for f in route.query_fields
    ]
    return parameters


def add_rpc_routes(app: FastAPI, routes: list[HttpRoute], backend: RpcBackend, timeout: float) -> None:
    """One endpoint per HTTP binding, plus a multipart twin for single-image RPCs."""
    for route in routes:
        method = route.method
        extra: dict[str, Any] = {"parameters": _parameters(route)}
        if route.body == "*":
            extra["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_ref(method.input_type)}},
            }
        app.add_api_route(
            route.path,
            _json_endpoint(route, backend, timeout),
            methods=[route.verb.upper()],
            operation_id=method.name,
            summary=f"{method.containing_service.full_name}/{method.name}",
            tags=[method.containing_service.full_name],
            responses=_responses(method.output_type),
            openapi_extra=rpc_extra(method, **extra),
            response_model=None,
        )
        field = route.upload_field
        if field is None:
            continue
        form_properties: dict[str, Schema] = {UPLOAD_PART: {"type": "string", "format": "binary"}}
        form_properties.update(
            {f.json_name: field_schema(f) for f in method.input_type.fields if f is not field}
        )
        app.add_api_route(
            route.path + UPLOAD_SUFFIX,
            _upload_endpoint(route, field, backend, timeout),
            methods=["POST"],
            operation_id=method.name + "Upload",
            summary=f"{method.containing_service.full_name}/{method.name} (multipart upload)",
            description=f"The `{field.name}` field as a multipart file part named `{UPLOAD_PART}`; "
            "other fields as form fields or query parameters.",
            tags=[method.containing_service.full_name],
            responses=_responses(method.output_type),
            openapi_extra=rpc_extra(method, requestBody={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": form_properties,
                                "required": [UPLOAD_PART],
                            }
                        }
                    },
                }),
            response_model=None,
        )
