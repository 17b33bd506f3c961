"""classify_client (clients/python) against real servers: both transports, sync and asyncio, errors, retries, deadlines, tokens, TLS."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from bench.harness import ServerProcess
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from classify_client import AsyncClient, ClassifyError, Client
from classify_client.models.classify import v1 as models

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
