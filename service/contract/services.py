"""The services this server answers, read from their descriptors."""

from __future__ import annotations

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2

from classify import classify_pb2 as tutorial_pb
from classify.v1 import classify_pb2 as pb
from inference import grpc_service_pb2 as oip_pb

# Service names come from the descriptors, never from string literals.
CLASSIFIER_SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["ClassifierService"]
TUTORIAL_SERVICE: ServiceDescriptor = tutorial_pb.DESCRIPTOR.services_by_name["Classifier"]
INFERENCE_SERVICE: ServiceDescriptor = oip_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# The APIs of this server, in the order the composition root hands their objects over.
SERVED_SERVICES: tuple[str, ...] = (
    CLASSIFIER_SERVICE.full_name,
    TUTORIAL_SERVICE.full_name,
    INFERENCE_SERVICE.full_name,
)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def method_path(method: MethodDescriptor) -> str:
    """The gRPC path of a method: ``/package.Service/Method``."""
    return f"/{method.containing_service.full_name}/{method.name}"


# What load balancers and orchestrators call to probe a replica: never traced.
PROBE_METHODS: frozenset[str] = frozenset(
    [method_path(m) for m in health_pb2.DESCRIPTOR.services_by_name["Health"].methods]
    + [method_path(INFERENCE_SERVICE.methods_by_name[name]) for name in ("ServerLive", "ServerReady")]
)


def model_health_service(name: str) -> str:
    """The grpc.health.v1 service name that reports one model's readiness."""
    return f"models/{name}"
