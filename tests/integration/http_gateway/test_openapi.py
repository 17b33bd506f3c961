"""/openapi.json is derived from the proto: every annotated RPC, with schemas matching the descriptors."""

from __future__ import annotations

from typing import Any

import httpx
from google.api import annotations_pb2
from google.protobuf.descriptor import Descriptor

from classify.v1 import classify_pb2 as pb


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    name = schema["$ref"].rsplit("/", 1)[-1]
    return document["components"]["schemas"][name]


def _assert_matches(document: dict[str, Any], schema: dict[str, Any], message: Descriptor) -> None:
    """The schema's properties are exactly the message's JSON field names, recursively."""
    resolved = _resolve(document, schema)
    assert set(resolved["properties"]) == {f.json_name for f in message.fields}, message.full_name
    assert resolved["additionalProperties"] is False
    for field in message.fields:
        prop = resolved["properties"][field.json_name]
        if field.message_type is not None and field.message_type.full_name != "google.protobuf.Any":
            ref = prop["items"] if field.is_repeated else prop
            _assert_matches(document, ref, field.message_type)


def test_every_annotated_rpc_has_an_operation_with_matching_schemas(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    service = pb.DESCRIPTOR.services_by_name["ClassifierService"]
    annotated = 0
    for method in service.methods:
        if not method.GetOptions().HasExtension(annotations_pb2.http):
            continue
        annotated += 1
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        operation = document["paths"][getattr(rule, verb)][verb]
        assert operation["operationId"] == method.name
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        _assert_matches(document, ok, method.output_type)
        if rule.body == "*":
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            _assert_matches(document, body, method.input_type)
    assert annotated == 6


def test_upload_route_is_described_as_multipart(http: httpx.Client) -> None:
    operation = http.get("/openapi.json").json()["paths"]["/v1/classify:upload"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}
    assert set(form["properties"]) == {"file", "topK", "model", "modelVersion"}


def test_docs_page_is_served(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
