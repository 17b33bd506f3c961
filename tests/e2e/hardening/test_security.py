"""TLS (and mTLS) and bearer tokens end to end with real clients; reflection and docs can be switched off."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from bench.harness import ServerProcess, start_server
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def secure_server(ca: trustme.CA, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    cert.private_key_pem.write_to_path(str(directory / "server.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    (directory / "tokens").write_text(f"# one token a line\n{TOKEN}\nsecond-token\n")
    server = start_server(
        weights, directory,
        "--tls-cert-file", str(directory / "server.pem"), "--tls-key-file", str(directory / "server.key"),
        "--tls-client-ca-file", str(directory / "ca.pem"), "--auth-token-file", str(directory / "tokens"),
        "--reflection", "false", "--docs", "false",
        wait=False,
    )
    _wait_serving(server, ca)
    yield server
    server.stop()


def _grpc_credentials(ca: trustme.CA, client: bool) -> grpc.ChannelCredentials:
    if not client:
        return grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    leaf = ca.issue_cert("client@example.test")
    return grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem.bytes(),
        private_key=leaf.private_key_pem.bytes(),
        certificate_chain=leaf.cert_chain_pems[0].bytes(),
    )


def _wait_serving(server: ServerProcess, ca: trustme.CA) -> None:
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log()
        try:
            with grpc.secure_channel(server.grpc_address, _grpc_credentials(ca, client=True)) as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise TimeoutError(server.log())


def _http_client(ca: trustme.CA, client_cert: bool = True) -> httpx.Client:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_cert:
        ca.issue_cert("client@example.test").configure_cert(context)
    return httpx.Client(verify=context, timeout=30)


def test_grpc_needs_a_token_except_for_health(secure_server: ServerProcess, ca: trustme.CA, photos: dict[str, bytes]) -> None:
    with grpc.secure_channel(secure_server.grpc_address, _grpc_credentials(ca, client=True)) as channel:
        stub = pb_grpc.ClassifierServiceStub(channel)
        request = pb.ClassifyRequest(image=photos["rocket.jpg"], top_k=2)
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
            with pytest.raises(grpc.RpcError) as error:
                stub.Classify(request, metadata=metadata, timeout=30)
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.Classify(request, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30)
        assert len(reply.predictions) == 2
        assert len(stub.Classify(request, metadata=(("authorization", "bearer second-token"),), timeout=30).predictions) == 2
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_http_needs_a_token_except_for_health(secure_server: ServerProcess, ca: trustme.CA, photos: dict[str, bytes]) -> None:
    url = secure_server.http_url.replace("http://", "https://")
    with _http_client(ca) as client:
        files = {"file": ("r.jpg", photos["rocket.jpg"])}
        denied = client.post(f"{url}/v1/classify:upload", files=files)
        assert denied.status_code == 401 and denied.json()["code"] == 16
        assert denied.headers["www-authenticate"] == "Bearer"
        assert client.post(f"{url}/predict/file", files=files, headers={"authorization": "Bearer nope"}).status_code == 401
        allowed = client.post(f"{url}/predict/file?topk=2", files=files, headers={"authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and len(allowed.json()["topk"]) == 2
        assert client.get(f"{url}/healthz").status_code == 200
        assert client.get(f"{url}/readyz").status_code == 200
        assert client.get(f"{url}/metrics").status_code == 401


def test_client_certificates_are_required(secure_server: ServerProcess, ca: trustme.CA) -> None:
    url = secure_server.http_url.replace("http://", "https://")
    with _http_client(ca, client_cert=False) as client, pytest.raises(httpx.HTTPError):
        client.get(f"{url}/healthz")
    with grpc.secure_channel(secure_server.grpc_address, _grpc_credentials(ca, client=False)) as channel:
        with pytest.raises(grpc.RpcError) as error:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(httpx.HTTPError):  # and plaintext is not served at all
        httpx.get(f"{secure_server.http_url}/healthz", timeout=5)


def test_reflection_and_docs_can_be_switched_off(secure_server: ServerProcess, ca: trustme.CA) -> None:
    url = secure_server.http_url.replace("http://", "https://")
    headers = {"authorization": f"Bearer {TOKEN}"}
    with _http_client(ca) as client:
        assert client.get(f"{url}/docs", headers=headers).status_code == 404
        assert client.get(f"{url}/openapi.json", headers=headers).status_code == 404
    with grpc.secure_channel(secure_server.grpc_address, _grpc_credentials(ca, client=True)) as channel:
        intercepted = grpc.intercept_channel(channel)
        with pytest.raises(grpc.RpcError) as error:
            list(ProtoReflectionDescriptorDatabase(intercepted).get_services())
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_tokens_are_never_logged(secure_server: ServerProcess) -> None:
    assert TOKEN not in secure_server.log()
