"""Who may make each call: one table that both transports read.

The gRPC interceptor looks a call up by its method path; the HTTP gateway
looks up the RPC behind the route (each route declares it, http_gateway/calls.py).
A call the table does not name needs a token whenever tokens are configured.
"""

from __future__ import annotations

import enum

from grpc_reflection.v1alpha import reflection_pb2

from service.contract.services import CLASSIFIER_SERVICE, HEALTH_SERVICE, INFERENCE_SERVICE, method_path


class Access(enum.Enum):
    OPEN = "open"  # no token: probes and tools carry none (health, liveness/readiness, reflection)
    CLIENT = "client"  # any accepted token, once tokens are configured
    ADMIN = "admin"  # an admin token whenever any token is configured (model control)


REFLECTION_SERVICE = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name

# Whole services, by full name.
SERVICES: dict[str, Access] = {
    HEALTH_SERVICE: Access.OPEN,
    REFLECTION_SERVICE: Access.OPEN,
}
# Single methods, by gRPC path; they override their service's entry.
METHODS: dict[str, Access] = {
    method_path(INFERENCE_SERVICE.methods_by_name["ServerLive"]): Access.OPEN,
    method_path(INFERENCE_SERVICE.methods_by_name["ServerReady"]): Access.OPEN,
    method_path(CLASSIFIER_SERVICE.methods_by_name["LoadModel"]): Access.ADMIN,
    method_path(CLASSIFIER_SERVICE.methods_by_name["UnloadModel"]): Access.ADMIN,
    method_path(INFERENCE_SERVICE.methods_by_name["RepositoryModelLoad"]): Access.ADMIN,
    method_path(INFERENCE_SERVICE.methods_by_name["RepositoryModelUnload"]): Access.ADMIN,
}


def access(method: str) -> Access:
    """Who may call ``/package.Service/Method``: the method's entry, else its service's, else CLIENT."""
    if method in METHODS:
        return METHODS[method]
    service = method.split("/")[1] if method.count("/") == 2 else ""
    return SERVICES.get(service, Access.CLIENT)
