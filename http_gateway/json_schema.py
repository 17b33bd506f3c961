"""JSON Schemas of proto messages under proto3's canonical JSON mapping, for OpenAPI."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

Schema = dict[str, Any]
REF_PREFIX = "#/components/schemas/"

_F = FieldDescriptor
_SCALARS: dict[int, Schema] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    # 64-bit integers are JSON strings in proto3's mapping (JavaScript numbers lose precision).
    _F.TYPE_INT64: {"type": "string", "format": "int64"},
    _F.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _F.TYPE_SINT64: {"type": "string", "format": "int64"},
    _F.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    _F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte", "description": "base64"},
}
_INT32_BOUNDS = {"minimum": -(2**31), "maximum": 2**31 - 1}

# Well-known types with a special JSON form.
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}


def schema_ref(message: Descriptor) -> Schema:
    return {"$ref": REF_PREFIX + message.full_name}


def component_schemas(roots: list[Descriptor], *, emitted_defaults: bool) -> dict[str, Schema]:
    """Schemas of ``roots`` and every message they reach, keyed by full message name.

    With ``emitted_defaults`` every non-oneof field is required: the gateway
    writes fields even when they hold their default value.
    """
    schemas: dict[str, Schema] = {}
    pending = list(roots)
    while pending:
        message = pending.pop()
        if message.full_name in schemas:
            continue
        if message.full_name in _WELL_KNOWN:
            schemas[message.full_name] = _WELL_KNOWN[message.full_name]
            continue
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in message.fields:
            properties[field.json_name] = field_schema(field)
            if field.message_type is not None and not _is_map(field):
                pending.append(field.message_type)
            elif _is_map(field) and field.message_type.fields_by_name["value"].message_type is not None:
                pending.append(field.message_type.fields_by_name["value"].message_type)
            if emitted_defaults and field.containing_oneof is None and not field.has_presence:
                required.append(field.json_name)
        schema: Schema = {
            "type": "object",
            "title": message.full_name,
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        schemas[message.full_name] = schema
    return schemas


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _single_schema(field: FieldDescriptor) -> Schema:
    if field.type == _F.TYPE_ENUM:
        return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    if field.message_type is not None:
        return schema_ref(field.message_type)
    schema = dict(_SCALARS[field.type])
    if schema.get("format") == "int32":
        schema.update(_INT32_BOUNDS)
    return schema


def field_schema(field: FieldDescriptor) -> Schema:
    if _is_map(field):
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single_schema(value)}
    if _is_repeated(field):
        return {"type": "array", "items": _single_schema(field)}
    return _single_schema(field)
