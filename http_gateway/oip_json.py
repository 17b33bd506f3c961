"""The Open Inference Protocol's REST bodies to and from its proto messages.

OIP REST is its own JSON (not proto3 JSON of ModelInferRequest): tensors as
``name``/``shape``/``datatype``/``data``, numbers as numbers, and Triton's
binary data extension (a JSON header of ``Inference-Header-Content-Length``
bytes, then raw tensors whose sizes ``binary_data_size`` gives). BYTES
elements in JSON ``data`` are base64 strings: KServe's image examples and
MLServer's ``base64`` content type agree on that, and encoded images are not
text. In the binary extension they travel raw, length-prefixed, exactly as
gRPC's ``raw_input_contents``, so no re-encoding happens there.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from inference import grpc_service_pb2 as pb
from service.contract.oip_tensors import fp32_from_raw, split_bytes_elements
from service.errors import InvalidArgument

HEADER_LENGTH = "inference-header-content-length"
BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA = "binary_data"  # output parameter: answer this output in binary
BINARY_DATA_OUTPUT = "binary_data_output"  # request parameter: answer every output in binary
# REST-only parameters: they shape the HTTP body and are not forwarded.
_REST_PARAMETERS = frozenset({BINARY_DATA_SIZE, BINARY_DATA, BINARY_DATA_OUTPUT})

# Which InferTensorContents field holds JSON data of each datatype.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP16": "fp32_contents", "FP32": "fp32_contents", "BF16": "fp32_contents",
    "FP64": "fp64_contents",
}


def message_json(message: Message) -> dict[str, Any]:
    """A message as the OIP's REST JSON: proto field names, 64-bit integers as numbers, enums by name.

    Scalars are always present (clients read zero counts); sub-messages when set.
    """
    result: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            result[field.name] = {k: _value_json(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            result[field.name] = [_value_json(field, v) for v in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if message.HasField(field.name):
                result[field.name] = message_json(value)
        elif field.containing_oneof is None or message.HasField(field.name):
            result[field.name] = _value_json(field, value)
    return result


def _value_json(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_json(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidArgument(f"invalid JSON request: {error}") from None
    if not isinstance(document, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return document


def parameter_value(parameter: pb.InferParameter) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else getattr(parameter, kind)


def _set_parameters(target: Any, parameters: object, where: str) -> None:
    """JSON parameters into a map<string, InferParameter>, leaving out the REST-only ones."""
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise InvalidArgument(f"{where}.parameters must be an object")
    for key, value in parameters.items():
        if key in _REST_PARAMETERS:
            continue
        entry = target[key]
        if isinstance(value, bool):
            entry.bool_param = value
        elif isinstance(value, int):
            entry.int64_param = value
        elif isinstance(value, float):
            entry.double_param = value
        elif isinstance(value, str):
            entry.string_param = value
        else:
            raise InvalidArgument(f"{where}.parameters.{key} must be a boolean, number or string")


def _flat(data: object) -> Iterator[object]:
    """Tensor data in row-major order, whether sent flat or nested."""
    if isinstance(data, list):
        for item in data:
            yield from _flat(item)
    else:
        yield data


def _bytes_element(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: BYTES elements in JSON must be base64 strings")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{where}: a BYTES element is not valid base64") from None


def _set_contents(tensor: pb.ModelInferRequest.InferInputTensor, data: object, where: str) -> None:
    values = list(_flat(data))
    if tensor.datatype == "BYTES":
        tensor.contents.bytes_contents.extend(_bytes_element(v, where) for v in values)
        return
    field = _CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise InvalidArgument(f"{where}: unknown datatype {tensor.datatype!r}")
    try:
        getattr(tensor.contents, field).extend(values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidArgument(f"{where}: data does not match datatype {tensor.datatype}") from None


@dataclass(frozen=True)
class RestInferRequest:
    """A REST inference request: the proto request, and how the client wants outputs back."""

    message: pb.ModelInferRequest
    binary_default: bool  # request parameter binary_data_output
    binary_outputs: tuple[bool | None, ...]  # per requested output: its binary_data, if given

    def binary(self, index: int) -> bool:
        """Whether response output ``index`` goes in binary (outputs answer in the order requested)."""
        if index < len(self.binary_outputs) and self.binary_outputs[index] is not None:
            return bool(self.binary_outputs[index])
        return self.binary_default


def parse_infer_request(body: bytes, header_length: str | None, model: str, version: str) -> RestInferRequest:
    """A REST inference body (JSON, or JSON plus binary tensors) as a ModelInferRequest."""
    try:
        return _parse_infer_request(body, header_length, model, version)
    except (ValueError, TypeError) as error:  # a value the proto field cannot hold (an int64 overflow...)
        raise InvalidArgument(f"invalid inference request: {error}") from None


def _parse_infer_request(body: bytes, header_length: str | None, model: str, version: str) -> RestInferRequest:
    binary = b""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise InvalidArgument("Inference-Header-Content-Length must be an integer") from None
        if not 0 <= length <= len(body):
            raise InvalidArgument(f"Inference-Header-Content-Length {length} is outside the body of {len(body)} bytes")
        body, binary = body[:length], body[length:]
    document = parse_json_object(body)
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=str(document.get("id", "")))
    _set_parameters(request.parameters, document.get("parameters"), "request")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument("inputs must be a non-empty list of tensors")
    offset, binary_inputs = 0, 0
    for i, item in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise InvalidArgument(f"{where} must be an object")
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidArgument(f"{where}.shape must be a list of integers")
        tensor = request.inputs.add(name=str(item.get("name", "")), datatype=str(item.get("datatype", "")), shape=shape)
        parameters = item.get("parameters") or {}
        _set_parameters(tensor.parameters, parameters, where)
        size = parameters.get(BINARY_DATA_SIZE) if isinstance(parameters, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidArgument(f"{where}.parameters.binary_data_size does not fit the binary data sent")
            request.raw_input_contents.append(binary[offset : offset + size])
            offset, binary_inputs = offset + size, binary_inputs + 1
        elif "data" in item:
            _set_contents(tensor, item["data"], where)
        else:
            raise InvalidArgument(f"{where} has neither data nor parameters.binary_data_size")
    if binary_inputs not in (0, len(inputs)):
        raise InvalidArgument("send every input as binary data or every input as JSON data, not a mix")
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data belong to no input")
    binary_outputs: list[bool | None] = []
    for i, item in enumerate(document.get("outputs") or []):
        if not isinstance(item, dict):
            raise InvalidArgument(f"outputs[{i}] must be an object")
        output = request.outputs.add(name=str(item.get("name", "")))
        parameters = item.get("parameters") or {}
        _set_parameters(output.parameters, parameters, f"outputs[{i}]")
        binary_outputs.append(parameters.get(BINARY_DATA) if isinstance(parameters, dict) else None)
    request_parameters = document.get("parameters") or {}
    return RestInferRequest(request, bool(request_parameters.get(BINARY_DATA_OUTPUT, False)), tuple(binary_outputs))


def _output_data(output: pb.ModelInferResponse.InferOutputTensor, raw: bytes | None) -> list[Any]:
    count = 1
    for d in output.shape:
        count *= d
    if output.datatype == "BYTES":
        elements = split_bytes_elements(raw, count) if raw is not None else list(output.contents.bytes_contents)
        return [e.decode("utf-8", errors="replace") for e in elements]
    if raw is not None:
        return list(fp32_from_raw(raw))
    return list(output.contents.fp32_contents)


def infer_response_body(response: pb.ModelInferResponse, request: RestInferRequest) -> tuple[bytes, int | None]:
    """The REST body of a response, and the JSON header's length when binary outputs follow it."""
    raw = list(response.raw_output_contents)
    result: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        result["id"] = response.id
    if response.parameters:
        result["parameters"] = {k: parameter_value(v) for k, v in response.parameters.items()}
    outputs, blobs = [], []
    for i, output in enumerate(response.outputs):
        entry: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
        data = raw[i] if i < len(raw) else None
        if request.binary(i) and data is not None:
            entry["parameters"] = {BINARY_DATA_SIZE: len(data)}
            blobs.append(data)
        else:
            entry["data"] = _output_data(output, data)
        outputs.append(entry)
    result["outputs"] = outputs
    header = json.dumps(result, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
