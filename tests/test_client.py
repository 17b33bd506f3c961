"""classify_client (clients/python) against real servers: both transports, sync and asyncio, errors, retries, deadlines, tokens, TLS."""

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
from tests.support import REPO, ServerProcess, free_port, start_server

TRANSPORTS = ("grpc", "http")
TOKEN = "client-test-token"


def _target(server: ServerProcess, transport: str) -> str:
    return server.grpc_address if transport == "grpc" else server.http_url


def _expected(server: ServerProcess, image: bytes, top_k: int) -> pb.ClassifyResponse:
    with grpc.insecure_channel(server.grpc_address) as channel:
        return pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=image, top_k=top_k), timeout=60)


def _assert_same(got: models.ClassifyResponse, expected: pb.ClassifyResponse) -> None:
    assert isinstance(got, models.ClassifyResponse)
    assert (got.model, got.model_version) == (expected.model, expected.model_version)
    assert [(p.label, p.class_index) for p in got.predictions] == [(p.label, p.class_index) for p in expected.predictions]
    assert [p.probability for p in got.predictions] == pytest.approx([p.probability for p in expected.predictions], abs=1e-6)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_client_gives_the_raw_stubs_predictions(server: ServerProcess, photos: dict[str, bytes], transport: str) -> None:
    """Client.classify equals the generated stub's answer, as a typed pydantic model."""
    with Client(_target(server, transport), transport=transport) as client:  # type: ignore[arg-type]
        for name in ("chelsea.png", "rocket.jpg"):
            _assert_same(client.classify(photos[name], top_k=3), _expected(server, photos[name], 3))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_async_client_gives_the_raw_stubs_predictions(server: ServerProcess, photos: dict[str, bytes], transport: str) -> None:
    """AsyncClient.classify equals the generated stub's answer, also with concurrent calls."""

    async def main() -> list[models.ClassifyResponse]:
        async with AsyncClient(_target(server, transport), transport=transport) as client:  # type: ignore[arg-type]
            return await asyncio.gather(*(client.classify(photos[n], top_k=4) for n in ("coffee.png", "china.jpg")))

    coffee, china = asyncio.run(main())
    _assert_same(coffee, _expected(server, photos["coffee.png"], 4))
    _assert_same(china, _expected(server, photos["china.jpg"], 4))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_models_and_health(server: ServerProcess, transport: str) -> None:
    """list_models, get_model and readiness answer alike on both transports, sync and async."""
    with Client(_target(server, transport), transport=transport) as client:  # type: ignore[arg-type]
        listing = client.list_models()
        assert isinstance(listing, models.ListModelsResponse) and listing.default_model == "resnet18"
        info = client.get_model("resnet18")
        assert info == listing.models[0] and info.num_classes == 1000 and len(info.labels) == 1000
        assert client.health() == "SERVING" and client.ready()

    async def main() -> tuple[str, str]:
        async with AsyncClient(_target(server, transport), transport=transport) as client:  # type: ignore[arg-type]
            return await client.health(), (await client.list_models()).models[0].version

    assert asyncio.run(main()) == ("SERVING", listing.models[0].version)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_batch_has_a_result_or_an_error_per_image(server: ServerProcess, photos: dict[str, bytes], transport: str) -> None:
    """One bad image of a batch is its own ClassifyError; the others are classified."""
    with Client(_target(server, transport), transport=transport) as client:  # type: ignore[arg-type]
        first, bad, last = client.classify_batch([photos["rocket.jpg"], b"not an image", photos["coffee.png"]], top_k=2)
    assert isinstance(first, models.ClassifyResponse) and len(first.predictions) == 2
    assert isinstance(bad, ClassifyError) and bad.code == "INVALID_ARGUMENT"
    assert isinstance(last, models.ClassifyResponse)

    async def main() -> list[models.ClassifyResponse | ClassifyError]:
        async with AsyncClient(_target(server, transport), transport=transport) as client:  # type: ignore[arg-type]
            return await client.classify_batch([b"", photos["rocket.jpg"]])

    empty, rocket = asyncio.run(main())
    assert isinstance(empty, ClassifyError) and empty.code == "INVALID_ARGUMENT"
    assert isinstance(rocket, models.ClassifyResponse) and len(rocket.predictions) == 5


def test_errors_have_the_same_code_and_message_on_both_transports(server: ServerProcess, photos: dict[str, bytes]) -> None:
    """Every failure is a ClassifyError with the same canonical code (and server message) over gRPC and HTTP."""
    image = photos["rocket.jpg"]
    cases = {
        "undecodable": lambda c: c.classify(b"not an image"),
        "bad top_k": lambda c: c.classify(image, top_k=-1),
        "unknown model": lambda c: c.classify(image, model="nope"),
        "unknown model info": lambda c: c.get_model("nope"),
        "too large": lambda c: c.classify(b"\xff" * (9 << 20)),  # the fixture allows 8 MiB
        "empty batch": lambda c: c.classify_batch([]),
        "deadline": lambda c: c.classify(image, timeout=0.005),
    }
    outcomes: dict[str, dict[str, ClassifyError]] = {}
    for transport in TRANSPORTS:
        with Client(_target(server, transport), transport=transport) as client:  # type: ignore[arg-type]
            for case, call in cases.items():
                with pytest.raises(ClassifyError) as error:
                    call(client)
                outcomes.setdefault(case, {})[transport] = error.value
    codes = {case: {t: e.code for t, e in by.items()} for case, by in outcomes.items()}
    assert codes == {
        case: {"grpc": code, "http": code}
        for case, code in {
            "undecodable": "INVALID_ARGUMENT", "bad top_k": "INVALID_ARGUMENT", "unknown model": "NOT_FOUND",
            "unknown model info": "NOT_FOUND", "too large": "RESOURCE_EXHAUSTED", "empty batch": "INVALID_ARGUMENT",
            "deadline": "DEADLINE_EXCEEDED",
        }.items()
    }
    for case in ("undecodable", "bad top_k", "unknown model", "unknown model info", "empty batch"):
        assert outcomes[case]["grpc"].message == outcomes[case]["http"].message, case
    assert outcomes["unknown model"]["http"].http_status == 404
    assert not outcomes["too large"]["grpc"].retryable and not outcomes["too large"]["http"].retryable


def test_retry_policy_backs_off_honours_retry_after_and_the_deadline() -> None:
    """Only UNAVAILABLE and overload are retried, exponentially, never past the bound or the deadline."""
    policy = RetryPolicy(max_attempts=4, initial_backoff_s=0.1, max_backoff_s=0.3, jitter=0.0)
    unavailable = ClassifyError("UNAVAILABLE", "loading")
    assert [policy.delay(a, unavailable, None) for a in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.3, None])
    assert policy.delay(1, ClassifyError("RESOURCE_EXHAUSTED", "queue full", retry_after=1.5), None) == 1.5
    assert policy.delay(1, ClassifyError("RESOURCE_EXHAUSTED", "image too large"), None) is None
    assert policy.delay(1, ClassifyError("INVALID_ARGUMENT", "bad"), None) is None
    assert policy.delay(1, unavailable, 0.05) is None  # would sleep past the deadline


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


def test_http_errors_without_a_status_body_and_overload_hints() -> None:
    """A 429's Retry-After makes it retryable; a body that is no google.rpc.Status maps from the HTTP status."""
    import httpx

    from classify_client.client import error_from_http

    shed = error_from_http(httpx.Response(429, headers={"retry-after": "2"}, json={"code": 8, "message": "queue full"}))
    assert (shed.code, shed.message, shed.retry_after, shed.retryable) == ("RESOURCE_EXHAUSTED", "queue full", 2.0, True)
    too_big = error_from_http(httpx.Response(413, json={"code": 8, "message": "too large", "details": []}))
    assert too_big.code == "RESOURCE_EXHAUSTED" and not too_big.retryable
    proxy = error_from_http(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert proxy.code == "UNAVAILABLE" and proxy.retryable and proxy.http_status == 502


def test_grpc_retry_advice_is_read_from_the_rich_status() -> None:
    """google.rpc.RetryInfo in grpc-status-details-bin (as the server sends it) becomes retry_after."""
    from classify_client.client import _grpc_error
    from service.contract.status import DETAILS_TRAILER, error_status
    from service.errors import Overloaded, PayloadTooLarge

    class Call(grpc.RpcError):  # the shape of a failed call: code, details, trailing metadata
        def __init__(self, status: object) -> None:
            self._trailers = ((DETAILS_TRAILER, status.SerializeToString()),)  # type: ignore[attr-defined]

        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return "message"

        def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
            return self._trailers

    shed = _grpc_error(Call(error_status(Overloaded("busy", retry_after=1.5))))
    assert (shed.code, shed.retry_after, shed.retryable) == ("RESOURCE_EXHAUSTED", 1.5, True)
    too_big = _grpc_error(Call(error_status(PayloadTooLarge("too big"))))
    assert too_big.retry_after is None and not too_big.retryable


def test_the_client_does_not_import_torch() -> None:
    """Clients stay light: neither the client nor the load generator pulls in torch or FastAPI."""
    code = "import sys, classify_client, service.tools.bench.cli; print(sorted({'torch', 'fastapi'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_the_client_states_the_api_it_speaks() -> None:
    """The distribution's major version is the N of the classify.vN package its generated code speaks."""
    assert classify_client.API_PACKAGE == pb.DESCRIPTOR.package == "classify.v1"
    assert classify_client.__version__.split(".")[0] == classify_client.API_PACKAGE.removeprefix("classify.v")
