"""A TLS server with only admin tokens, its stderr a pipe: JSON lines for everything, 401 for unknown tokens.

gRPC core writes its own lines to file descriptor 2 (a failed TLS handshake: ``I1206 ...
ssl_transport_security.cc:2563] Handshake failed ...``) and uvicorn's records carry a
``color_message``: in JSON logs both must become one clean object a line. With only admin tokens
configured, classification is open and a control call with a token the server does not know is
UNAUTHENTICATED / 401 (not "this token may only classify").
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import trustme

from bench.harness import REPO, ServerProcess, free_port

PYTHONPATH = os.pathsep.join(str(REPO / p) for p in ("", "gen", "clients/python/src"))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    scratch = tmp_path_factory.mktemp("tls-logs")
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(scratch / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(scratch / "key.pem"))
    grpc_port, http_port = free_port(), free_port()
    log = scratch / "server.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLASSIFY_")},
           "PYTHONPATH": PYTHONPATH, "CLASSIFY_ADMIN_TOKENS": '["admin-secret"]'}
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
               "--http-port", str(http_port), "--weights", str(weights), "--backend", "torch",
               "--tls-cert-file", str(scratch / "cert.pem"), "--tls-key-file", str(scratch / "key.pem")]
    with log.open("wb") as out:  # a file, not a terminal: --log-format auto writes JSON
        process = subprocess.Popen(command, cwd=scratch, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = ServerProcess(process, grpc_port, http_port, log, command)
    try:
        ca_pem = ca.cert_pem.bytes()
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        import time

        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, server.log()
            try:
                with grpc.secure_channel(f"localhost:{grpc_port}", credentials) as channel:
                    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def test_unknown_token_on_a_control_call_is_401(tls_server: ServerProcess, ca: trustme.CA) -> None:
    """Only admin tokens configured: an unknown token is 401 on both transports; the admin token passes auth."""
    context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
    with httpx.Client(base_url=f"https://localhost:{tls_server.http_port}", verify=context) as client:
        for headers in ({"authorization": "Bearer nobody-knows-me"}, {}):
            reply = client.post("/v1/models/resnet18:load", json={}, headers=headers)
            assert reply.status_code == 401, reply.text
        admitted = client.post("/v1/models/resnet18:load", json={}, headers={"authorization": "Bearer admin-secret"})
        assert admitted.status_code == 400 and "repository" in admitted.text  # past auth: no repository here
    from classify.v1 import classify_pb2 as pb
    from classify.v1 import classify_pb2_grpc as pb_grpc

    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    with grpc.secure_channel(f"localhost:{tls_server.grpc_port}", credentials) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.ClassifierServiceStub(channel).LoadModel(
                pb.LoadModelRequest(name="resnet18"), metadata=[("authorization", "Bearer nobody-knows-me")], timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_json_logs_hold_grpc_cores_lines_and_no_colour(tls_server: ServerProcess) -> None:
    """A plaintext client at the TLS port makes gRPC core log a failed handshake: it arrives as a JSON record."""
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.grpc_port}") as channel:
        with pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=1)  # the handshake fails; the channel never gets ready
    with socket.create_connection(("127.0.0.1", tls_server.http_port)) as plain:  # a plaintext HTTP request at TLS
        plain.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        plain.recv(100)
    tls_server.stop()
    lines = [line for line in tls_server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line one JSON object
    assert any(r["logger"] == "native" and "Handshake failed" in r["message"] for r in records), lines
    assert not any("color_message" in r for r in records), lines
    assert any(r["logger"].startswith("uvicorn") for r in records), lines
