"""Our inference proto against the descriptors compiled into tritonclient: every declared name, number and type."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from bench.harness import REPO
from tests.e2e.contract.test_buf import _buf

# Runs in tritonclient's venv: its generated modules' descriptors, serialized.
DUMP = """
import sys
from google.protobuf import descriptor_pb2
from tritonclient.grpc import model_config_pb2, service_pb2
files = descriptor_pb2.FileDescriptorSet()
for module in (model_config_pb2, service_pb2):
    module.DESCRIPTOR.CopyToProto(files.file.add())
sys.stdout.buffer.write(files.SerializeToString())
"""
REQUIRED_RPCS = {
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig",
    "ModelInfer", "ModelStatistics", "RepositoryIndex",
}

Messages = dict[str, descriptor_pb2.DescriptorProto]
Enums = dict[str, descriptor_pb2.EnumDescriptorProto]


def _walk(files: descriptor_pb2.FileDescriptorSet) -> tuple[Messages, Enums, dict[str, descriptor_pb2.ServiceDescriptorProto]]:
    messages: Messages = {}
    enums: Enums = {}
    services = {}

    def visit(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        messages[name] = message
        for enum in message.enum_type:
            enums[f"{name}.{enum.name}"] = enum
        for nested in message.nested_type:
            visit(name, nested)

    for file in files.file:
        package = f".{file.package}"
        for enum in file.enum_type:
            enums[f"{package}.{enum.name}"] = enum
        for message in file.message_type:
            visit(package, message)
        for service in file.service:
            services[f"{package}.{service.name}"] = service
    return messages, enums, services


@pytest.fixture(scope="module")
def theirs(triton_python: Path) -> descriptor_pb2.FileDescriptorSet:
    result = subprocess.run([str(triton_python), "-c", DUMP], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return descriptor_pb2.FileDescriptorSet.FromString(result.stdout)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    """Compiled by buf from proto/ itself (the source of truth; gen/ is checked against it elsewhere)."""
    out = tmp_path_factory.mktemp("descriptors") / "inference.binpb"
    result = _buf("build", "--path", "proto/inference", "--exclude-imports", "-o", str(out), cwd=REPO)
    assert result.returncode == 0, result.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _field_signature(message: descriptor_pb2.DescriptorProto, field: descriptor_pb2.FieldDescriptorProto) -> tuple[object, ...]:
    oneof = message.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else ""
    return (field.name, field.number, field.label, field.type, field.type_name, oneof)


def test_every_declared_message_matches_tritonclient(ours: descriptor_pb2.FileDescriptorSet, theirs: descriptor_pb2.FileDescriptorSet) -> None:
    our_messages, our_enums, _ = _walk(ours)
    their_messages, their_enums, _ = _walk(theirs)
    assert {f.package for f in ours.file} == {"inference"}
    problems = []
    for name, message in our_messages.items():
        if name not in their_messages:
            problems.append(f"{name}: no such message in tritonclient")
            continue
        their_fields = {f.number: _field_signature(their_messages[name], f) for f in their_messages[name].field}
        for field in message.field:
            mine = _field_signature(message, field)
            if their_fields.get(field.number) != mine:
                problems.append(f"{name}.{field.name}: ours {mine}, theirs {their_fields.get(field.number)}")
    for name, enum in our_enums.items():
        their_values = {v.name: v.number for v in their_enums[name].value} if name in their_enums else {}
        for value in enum.value:
            if their_values.get(value.name) != value.number:
                problems.append(f"{name}.{value.name} = {value.number}: tritonclient has {their_values.get(value.name)}")
    assert not problems, "\n".join(problems)
    assert len(our_messages) > 40  # the walk saw the whole contract, nested messages and map entries included


def test_every_declared_rpc_matches_tritonclient(ours: descriptor_pb2.FileDescriptorSet, theirs: descriptor_pb2.FileDescriptorSet) -> None:
    _, _, our_services = _walk(ours)
    _, _, their_services = _walk(theirs)
    assert set(our_services) == {".inference.GRPCInferenceService"}
    service = our_services[".inference.GRPCInferenceService"]
    their_methods = {m.name: m for m in their_services[".inference.GRPCInferenceService"].method}
    assert REQUIRED_RPCS <= {m.name for m in service.method}
    for method in service.method:
        theirs_method = their_methods[method.name]
        assert (method.input_type, method.output_type, method.client_streaming, method.server_streaming) == (
            theirs_method.input_type, theirs_method.output_type,
            theirs_method.client_streaming, theirs_method.server_streaming,
        ), method.name
