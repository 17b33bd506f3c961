"""One access table drives both transports: change an entry, and gRPC and HTTP follow together.

A real grpc.aio server on port 0 and the gateway's ASGI app (through
httpx.ASGITransport), both with tokens configured, over API objects whose
engine is not loaded: a call that passes the access check answers
UNAVAILABLE / 503 ("still loading"), one that does not answers
UNAUTHENTICATED / 401 or PERMISSION_DENIED / 403. The access check is what is
under test; the model behind it is not needed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import httpx
import pytest

from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from http_gateway.app import create_app
from http_gateway.calls import RPC_EXTENSION
from inference import grpc_service_pb2 as oip_pb
from inference import grpc_service_pb2_grpc as oip_grpc
from service.api.classifier_v1 import ClassifierServiceApi
from service.api.dispatch import InProcessBackend
from service.api.inference_v2 import InferenceServiceApi
from service.api.tutorial import TutorialClassifierApi
from service.auth import AdminVerifier, Authorizer, TokenVerifier
from service.contract import access
from service.contract.access import Access
from service.contract.services import CLASSIFIER_SERVICE, INFERENCE_SERVICE, SERVED_SERVICES, method_path
from service.core.engine import EngineRef
from service.grpc_server.server import GrpcServer

CLIENT, ADMIN = "client-token", "admin-token"
KNOWN = TokenVerifier([CLIENT, ADMIN])
AUTHORIZER = Authorizer(KNOWN, AdminVerifier(TokenVerifier([ADMIN]), known=KNOWN))  # as service/roots/common.py builds it
CLASSIFY = method_path(CLASSIFIER_SERVICE.methods_by_name["Classify"])
SERVER_METADATA = method_path(INFERENCE_SERVICE.methods_by_name["ServerMetadata"])


class Apis:
    def __init__(self) -> None:
        ref = EngineRef()  # never set: every call that gets through answers UNAVAILABLE
        self.objects = (ClassifierServiceApi(ref), TutorialClassifierApi(ref), InferenceServiceApi(ref))
        self.backend = InProcessBackend(dict(zip(SERVED_SERVICES, self.objects, strict=True)), ref)


@pytest.fixture(scope="module")
def grpc_target() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start() -> tuple[GrpcServer, int]:  # grpc.aio servers belong to the loop they run on
        server = GrpcServer(*Apis().objects, max_message_bytes=1 << 20, authorizer=AUTHORIZER)
        port = server.listen("127.0.0.1", 0)
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield f"127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)


@pytest.fixture(scope="module")
def app() -> object:
    return create_app(Apis().backend, max_request_bytes=1 << 20, request_timeout_s=5, authorizer=AUTHORIZER)


def _over_grpc(target: str, token: str | None, call: str) -> str:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(target) as channel:
        try:
            if call == "classify":
                pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=b"x"), timeout=10, metadata=metadata)
            else:
                oip_grpc.GRPCInferenceServiceStub(channel).ServerMetadata(oip_pb.ServerMetadataRequest(), timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            return error.code().name
    return "OK"


def _over_http(app: object, token: str | None, call: str) -> int:
    headers = {"authorization": f"Bearer {token}"} if token else {}

    async def send() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:  # type: ignore[arg-type]
            if call == "classify":
                reply = await client.post("/v1/classify", json={"image": "eA=="}, headers=headers)
            else:
                reply = await client.get("/v2", headers=headers)
            return reply.status_code

    return asyncio.run(send())


def _both(grpc_target: str, app: object, token: str | None, call: str) -> tuple[str, int]:
    return _over_grpc(grpc_target, token, call), _over_http(app, token, call)


def test_the_table_as_shipped(grpc_target: str, app: object) -> None:
    """Classify and ServerMetadata need a token on both transports; with one they reach the (unloaded) engine."""
    for call in ("classify", "metadata"):
        assert _both(grpc_target, app, None, call) == ("UNAUTHENTICATED", 401), call
        assert _both(grpc_target, app, "wrong", call) == ("UNAUTHENTICATED", 401), call
    assert _both(grpc_target, app, CLIENT, "classify") == ("UNAVAILABLE", 503)


def test_opening_a_method_opens_it_on_both_transports(grpc_target: str, app: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(access.METHODS, SERVER_METADATA, Access.OPEN)
    grpc_code, http_status = _both(grpc_target, app, None, "metadata")
    assert grpc_code != "UNAUTHENTICATED" and http_status != 401, (grpc_code, http_status)
    assert _both(grpc_target, app, None, "classify") == ("UNAUTHENTICATED", 401)  # the rest stays closed


def test_making_a_method_admin_only_does_so_on_both_transports(
    grpc_target: str, app: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(access.METHODS, CLASSIFY, Access.ADMIN)
    assert _both(grpc_target, app, CLIENT, "classify") == ("PERMISSION_DENIED", 403)
    assert _both(grpc_target, app, ADMIN, "classify") == ("UNAVAILABLE", 503)


def test_every_api_route_declares_the_rpc_it_calls(app: object) -> None:
    """The HTTP side finds its access rule through the route's RPC: no route may leave it out."""
    document = app.openapi()  # type: ignore[attr-defined]
    services = {*SERVED_SERVICES, "grpc.health.v1.Health"}
    for path, operations in document["paths"].items():
        for verb, operation in operations.items():
            method = operation.get(RPC_EXTENSION)
            assert method, f"{verb.upper()} {path} declares no {RPC_EXTENSION}"
            assert method.split("/")[1] in services, (path, method)
