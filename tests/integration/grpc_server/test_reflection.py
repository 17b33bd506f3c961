"""Reflection lets clients discover everything with no .proto file at hand."""

from __future__ import annotations

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def test_lists_the_four_services(channel: grpc.Channel) -> None:
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {
        "classify.v1.ClassifierService", "classify.Classifier", "inference.GRPCInferenceService", "grpc.health.v1.Health"
    } <= services


def test_resolves_the_inference_protocol(channel: grpc.Channel) -> None:
    """The OIP service and its messages, model_config.proto's included, resolve through reflection."""
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    service = pool.FindServiceByName("inference.GRPCInferenceService")
    assert {"ServerLive", "ModelInfer", "ModelConfig", "ModelStatistics", "RepositoryIndex"} <= {m.name for m in service.methods}
    config = service.methods_by_name["ModelConfig"].output_type.fields_by_name["config"].message_type
    assert config.full_name == "inference.ModelConfig" and config.fields_by_name["max_batch_size"].number == 4


def test_resolves_methods_and_messages(channel: grpc.Channel) -> None:
    """A reflection-built pool knows every RPC's request and response fields."""
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    service = pool.FindServiceByName("classify.v1.ClassifierService")
    assert {m.name for m in service.methods} == {
        "Classify", "ClassifyBatch", "ClassifyStream", "ListModels", "GetModel", "LoadModel", "UnloadModel"
    }
    classify = service.methods_by_name["Classify"]
    assert [f.name for f in classify.input_type.fields] == ["image", "top_k", "model", "model_version"]
    assert "predictions" in classify.output_type.fields_by_name
    stream = service.methods_by_name["ClassifyStream"]
    assert stream.client_streaming and stream.server_streaming
    tutorial = pool.FindServiceByName("classify.Classifier").methods_by_name["Predict"]
    assert tutorial.input_type.full_name == "classify.ImageRequest"
    assert [f.name for f in tutorial.output_type.fields] == ["topk"]
