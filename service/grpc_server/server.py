"""Building the grpc.aio server: both services, reflection, health, limits."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from classify import classify_pb2_grpc as tutorial_grpc
from classify.v1 import classify_pb2_grpc as pb_grpc
from inference import grpc_service_pb2_grpc as oip_grpc
from service.api.classifier_v1 import ClassifierServiceApi
from service.api.inference_v2 import InferenceServiceApi
from service.api.tutorial import TutorialClassifierApi
from service.auth import Authorizer
from service.contract.access import REFLECTION_SERVICE
from service.contract.services import HEALTH_SERVICE, INFERENCE_SERVICE, SERVED_SERVICES, model_health_service
from service.grpc_server.interceptor import CallInterceptor
from service.grpc_server.servicers import (
    ClassifierServiceServicer,
    InferenceServiceServicer,
    TutorialClassifierServicer,
    UnimplementedMethods,
)
from service.tracing import Tracing


class GrpcServer:
    """The gRPC side of the service; health stays NOT_SERVING until ``set_serving``."""

    def __init__(
        self,
        classifier: ClassifierServiceApi,
        tutorial: TutorialClassifierApi,
        inference: InferenceServiceApi,
        *,
        max_message_bytes: int,
        authorizer: Authorizer | None = None,
        reflection_enabled: bool = True,
        tracing: Tracing | None = None,
    ) -> None:
        self.server = grpc.aio.server(
            interceptors=[CallInterceptor(SERVED_SERVICES, authorizer or Authorizer(None, None), tracing)],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        pb_grpc.add_ClassifierServiceServicer_to_server(ClassifierServiceServicer(classifier), self.server)
        tutorial_grpc.add_ClassifierServicer_to_server(TutorialClassifierServicer(tutorial), self.server)
        oip_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServiceServicer(inference), self.server)
        # After the declared services: only calls none of them declares reach it.
        self.server.add_generic_rpc_handlers((UnimplementedMethods((INFERENCE_SERVICE.full_name,)),))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if reflection_enabled:
            reflection.enable_server_reflection((*SERVED_SERVICES, HEALTH_SERVICE, REFLECTION_SERVICE), self.server)

    def listen(self, host: str, port: int, credentials: grpc.ServerCredentials | None = None) -> int:
        """Bind a port (TLS when ``credentials`` are given); returns it (useful with port 0)."""
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if credentials is None:
            bound = self.server.add_insecure_port(address)
        else:
            bound = self.server.add_secure_port(address, credentials)
        if bound == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        return bound

    async def start(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()

    async def set_serving(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def set_not_serving(self) -> None:
        """Health turns NOT_SERVING for good (graceful shutdown has begun)."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, stop accepting, let in-flight calls finish within ``grace``."""
        await self.set_not_serving()
        await self.server.stop(grace)

    async def set_model_serving(self, name: str, serving: bool) -> None:
        """Per-model health: service ``models/NAME`` is SERVING while the model has a ready version."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(model_health_service(name), status)

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *SERVED_SERVICES):
            await self.health.set(name, status)
