"""The Python client against servers of its own: retries while one loads over TLS with a token, the predict command, no torch imported."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import trustme

import classify_client
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from classify_client import AsyncClient, ClassifyError, Client, RetryPolicy
from classify_client.models.classify import v1 as models
from tests.integration.test_client import TOKEN, TRANSPORTS, _expected
from bench.harness import REPO, ServerProcess, free_port, start_server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_gives_up_after_the_bound_with_unavailable(transport: str, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listening: max_attempts tries, then UNAVAILABLE; a deadline cuts retries shorter, sync and async."""
    caplog.set_level(logging.INFO, logger="classify_client.client")
    port = free_port()
    target = f"127.0.0.1:{port}" if transport == "grpc" else f"http://127.0.0.1:{port}"
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
    with Client(target, transport=transport, retry=policy) as client:  # type: ignore[arg-type]
        with pytest.raises(ClassifyError) as error:
            client.classify(b"x")
    assert error.value.code == "UNAVAILABLE"
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2

    async def main() -> tuple[ClassifyError, float]:
        patient = RetryPolicy(max_attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.1)
        async with AsyncClient(target, transport=transport, retry=patient) as client:  # type: ignore[arg-type]
            started = time.monotonic()
            try:
                await client.classify(b"x", timeout=0.5)
            except ClassifyError as failure:
                return failure, time.monotonic() - started
        raise AssertionError("a call to a closed port succeeded")

    failure, elapsed = asyncio.run(main())
    assert failure.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and elapsed < 3.0


def test_retries_a_loading_server_until_ready_over_tls_with_a_token(
    weights: Path, tmp_path: Path, photos: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """Called right after start-up (not listening, then loading), both transports retry and succeed; a bad token is not retried."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    server = start_server(
        weights, tmp_path, "--tls-cert-file", str(tmp_path / "server.pem"), "--tls-key-file", str(tmp_path / "server.key"),
        "--auth-token-file", str(tmp_path / "tokens"), wait=False,
    )
    caplog.set_level(logging.INFO, logger="classify_client.client")
    targets = {"grpc": server.grpc_address, "http": server.http_url.replace("http://", "https://")}
    policy = RetryPolicy(max_attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.5)
    results: dict[str, object] = {}

    def call(transport: str) -> None:
        try:
            with Client(targets[transport], transport=transport, token=TOKEN, root_ca=tmp_path / "ca.pem",  # type: ignore[arg-type]
                        retry=policy, timeout=180) as client:
                results[transport] = client.classify(photos["rocket.jpg"], top_k=2)
        except Exception as error:  # reported by the assertion below
            results[transport] = error

    try:
        threads = [threading.Thread(target=call, args=(t,)) for t in TRANSPORTS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(200)
        for transport in TRANSPORTS:
            result = results.get(transport)
            assert isinstance(result, models.ClassifyResponse) and len(result.predictions) == 2, (transport, result, server.log())
        retried = {r.getMessage().split()[0] for r in caplog.records if "retry" in r.getMessage()}
        assert retried == set(TRANSPORTS)

        caplog.clear()
        for transport in TRANSPORTS:
            with Client(targets[transport], transport=transport, token="wrong", root_ca=tmp_path / "ca.pem",  # type: ignore[arg-type]
                        retry=policy) as client:
                with pytest.raises(ClassifyError) as error:
                    client.classify(photos["rocket.jpg"])
                assert error.value.code == "UNAUTHENTICATED"
                assert client.health() == "SERVING"  # health needs no token
        assert not [r for r in caplog.records if "retry" in r.getMessage()]
    finally:
        server.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_predict_command_over_either_transport(server: ServerProcess, photos: dict[str, bytes], tmp_path: Path, transport: str) -> None:
    """`classify predict --transport` prints the same proto3 JSON over gRPC and HTTP."""
    image = tmp_path / "rocket.jpg"
    image.write_bytes(photos["rocket.jpg"])
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "predict", str(image), "--json", "--top-k", "2",
         "--transport", transport, "--server", server.grpc_address, "--http", server.http_url],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    expected = _expected(server, photos["rocket.jpg"], 2)
    assert document["image"] == str(image) and document["model"] == expected.model
    assert [p["classIndex"] for p in document["predictions"]] == [p.class_index for p in expected.predictions]


def test_the_client_does_not_import_torch() -> None:
    """Clients stay light: neither the client nor the load generator pulls in torch or FastAPI."""
    code = "import sys, classify_client, service.tools.bench.cli; print(sorted({'torch', 'fastapi'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
