"""Several models in one server: selection by name, metadata for all, custom class counts."""

from __future__ import annotations

import base64

import grpc
import httpx
import pytest

from bench.harness import ServerProcess
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from tests.conftest import INSECT_LABELS


@pytest.fixture
def stub(models_server: ServerProcess):
    with grpc.insecure_channel(models_server.grpc_address) as channel:
        yield pb_grpc.ClassifierServiceStub(channel)


def test_metadata_lists_every_model_over_both_transports(stub, models_server: ServerProcess) -> None:
    listing = stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert listing.default_model == "efficientnet_lite0"
    assert [(m.name, m.architecture, m.num_classes) for m in listing.models] == [
        ("efficientnet_lite0", "efficientnet_lite0", 1000),
        ("resnet18", "resnet18", 1000),
        ("insects", "resnet18", 3),
    ]
    assert list(listing.models[2].labels) == list(INSECT_LABELS)
    assert listing.models[0].weights_sha256.startswith("57934424")
    http_listing = httpx.get(f"{models_server.http_url}/v1/models").json()
    assert [m["name"] for m in http_listing["models"]] == ["efficientnet_lite0", "resnet18", "insects"]


def test_requests_choose_their_model(stub, photos: dict[str, bytes]) -> None:
    image = photos["coffee.png"]
    default = stub.Classify(pb.ClassifyRequest(image=image, top_k=1), timeout=30)
    assert default.model == "efficientnet_lite0" and default.model_version == "579344248a93"
    insects = stub.Classify(pb.ClassifyRequest(image=image, top_k=3, model="insects"), timeout=30)
    assert insects.model == "insects"
    assert sorted(p.label for p in insects.predictions) == sorted(INSECT_LABELS)


def test_top_k_bounds_follow_the_models_class_count(stub, models_server: ServerProcess, photos: dict[str, bytes]) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(pb.ClassifyRequest(image=photos["coffee.png"], top_k=4, model="insects"), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "between 0 and 3" in error.value.details()
    body = {"image": base64.b64encode(photos["coffee.png"]).decode(), "model": "insects"}
    reply = httpx.post(f"{models_server.http_url}/v1/classify", json=body, timeout=30)
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 3  # default 5 capped at 3


def test_unknown_model_is_not_found_over_both_transports(stub, models_server: ServerProcess, photos: dict[str, bytes]) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stub.Classify(pb.ClassifyRequest(image=photos["coffee.png"], model="vgg"), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert httpx.get(f"{models_server.http_url}/v1/models/vgg").status_code == 404
    reply = httpx.post(
        f"{models_server.http_url}/v1/classify:upload?model=vgg", files={"file": ("x", photos["coffee.png"])}
    )
    assert reply.status_code == 404 and reply.json()["code"] == 5
