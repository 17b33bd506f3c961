"""Every RPC over a real channel on real photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest
from torchvision.models import ResNet18_Weights

from bench.harness import real_photos
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

IMAGENET = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.ClassifierServiceStub:
    return pb_grpc.ClassifierServiceStub(channel)


def _assert_valid(response: pb.ClassifyResponse, k: int, weights: Path) -> None:
    probabilities = [p.probability for p in response.predictions]
    assert len(probabilities) == k
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    for p in response.predictions:
        assert IMAGENET[p.class_index] == p.label
    assert response.model == "resnet18"
    assert response.model_version == hashlib.sha256(weights.read_bytes()).hexdigest()[:12]


@pytest.mark.parametrize("name", sorted(real_photos()))
def test_classify_real_photos(name: str, stub: pb_grpc.ClassifierServiceStub, photos: dict[str, bytes], weights: Path) -> None:
    response = stub.Classify(pb.ClassifyRequest(image=photos[name], top_k=3), timeout=30)
    _assert_valid(response, 3, weights)


def test_top_k_zero_means_five_and_all_classes_allowed(stub: pb_grpc.ClassifierServiceStub, photos: dict[str, bytes], weights: Path) -> None:
    _assert_valid(stub.Classify(pb.ClassifyRequest(image=photos["coffee.png"]), timeout=30), 5, weights)
    every = stub.Classify(pb.ClassifyRequest(image=photos["coffee.png"], top_k=1000), timeout=30)
    _assert_valid(every, 1000, weights)
    assert abs(sum(p.probability for p in every.predictions) - 1.0) < 1e-3


def test_same_image_same_answer_alone_or_batched(stub: pb_grpc.ClassifierServiceStub, photos: dict[str, bytes]) -> None:
    """Batching does not change results: unary and batch agree to float32 precision."""
    names = sorted(photos)
    alone = [stub.Classify(pb.ClassifyRequest(image=photos[n], top_k=5), timeout=30) for n in names]
    batch = stub.ClassifyBatch(
        pb.ClassifyBatchRequest(requests=[pb.ClassifyRequest(image=photos[n], top_k=5) for n in names]),
        timeout=60,
    )
    for single, result in zip(alone, batch.results, strict=True):
        assert result.WhichOneof("result") == "response"
        assert [p.class_index for p in result.response.predictions] == [p.class_index for p in single.predictions]
        for a, b in zip(result.response.predictions, single.predictions, strict=True):
            assert a.probability == pytest.approx(b.probability, rel=1e-4, abs=1e-6)


def test_batch_reports_errors_per_image(stub: pb_grpc.ClassifierServiceStub, photos: dict[str, bytes]) -> None:
    response = stub.ClassifyBatch(
        pb.ClassifyBatchRequest(
            requests=[
                pb.ClassifyRequest(image=photos["chelsea.png"], top_k=2),
                pb.ClassifyRequest(image=b"not an image"),
                pb.ClassifyRequest(image=photos["rocket.jpg"], top_k=-1),
                pb.ClassifyRequest(image=photos["rocket.jpg"], model="nope"),
                pb.ClassifyRequest(image=photos["rocket.jpg"], top_k=1),
            ]
        ),
        timeout=60,
    )
    kinds = [r.WhichOneof("result") for r in response.results]
    assert kinds == ["response", "error", "error", "error", "response"]
    codes = [r.error.code for r in response.results if r.HasField("error")]
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.NOT_FOUND.value[0]]
    assert "could not be decoded" in response.results[1].error.message
    assert len(response.results[4].response.predictions) == 1


def test_stream_answers_every_request_with_its_id(stub: pb_grpc.ClassifierServiceStub, photos: dict[str, bytes]) -> None:
    names = sorted(photos) * 3
    requests = [
        pb.ClassifyStreamRequest(request_id=f"req-{i}", request=pb.ClassifyRequest(image=photos[n], top_k=2))
        for i, n in enumerate(names)
    ]
    requests.append(pb.ClassifyStreamRequest(request_id="bad", request=pb.ClassifyRequest(image=b"junk")))
    responses = list(stub.ClassifyStream(iter(requests), timeout=120))
    by_id = {r.request_id: r for r in responses}
    assert set(by_id) == {r.request_id for r in requests} and len(responses) == len(requests)
    assert by_id["bad"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    alone = stub.Classify(pb.ClassifyRequest(image=photos[names[0]], top_k=2), timeout=30)
    assert [p.class_index for p in by_id["req-0"].response.predictions] == [p.class_index for p in alone.predictions]


def test_model_metadata(stub: pb_grpc.ClassifierServiceStub, weights: Path) -> None:
    listing = stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert listing.default_model == "resnet18"
    (info,) = listing.models
    assert info.name == "resnet18" and info.architecture == "resnet18"
    assert info.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info.version == info.weights_sha256[:12]
    assert (info.input_height, info.input_width, info.num_classes) == (224, 224, 1000)
    assert list(info.labels) == IMAGENET
    assert (info.backend, info.device, info.precision) == ("onnxruntime", "cpu", "fp32")  # the default backend
    assert stub.GetModel(pb.GetModelRequest(name="resnet18"), timeout=10).model == info
    with pytest.raises(grpc.RpcError) as error:
        stub.GetModel(pb.GetModelRequest(name="missing"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
