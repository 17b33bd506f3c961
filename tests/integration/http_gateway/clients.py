"""One function per way of asking for a classification, all answering (labels, probabilities)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import grpc
import httpx
import numpy as np

from classify import classify_pb2 as tutorial_pb
from classify import classify_pb2_grpc as tutorial_grpc
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

Answer = list[tuple[str, float]]
Ask = Callable[[bytes, int], Answer]


def grpc_classify(address: str) -> Ask:
    def ask(image: bytes, k: int) -> Answer:
        with grpc.insecure_channel(address) as channel:
            r = pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=image, top_k=k), timeout=60)
        return [(p.label, p.probability) for p in r.predictions]

    return ask


def grpc_tutorial(address: str) -> Ask:
    def ask(image: bytes, k: int) -> Answer:
        with grpc.insecure_channel(address) as channel:
            r = tutorial_grpc.ClassifierStub(channel).Predict(tutorial_pb.ImageRequest(image=image, topk=k), timeout=60)
        return [(p.label, p.prob) for p in r.topk]

    return ask


def http_json(base_url: str) -> Ask:
    def ask(image: bytes, k: int) -> Answer:
        body = {"image": base64.b64encode(image).decode(), "topK": k}
        r = httpx.post(f"{base_url}/v1/classify", json=body, timeout=60)
        r.raise_for_status()
        return [(p["label"], p["probability"]) for p in r.json()["predictions"]]

    return ask


def http_upload(base_url: str) -> Ask:
    def ask(image: bytes, k: int) -> Answer:
        r = httpx.post(f"{base_url}/v1/classify:upload", files={"file": ("image", image)}, data={"topK": str(k)}, timeout=60)
        r.raise_for_status()
        return [(p["label"], p["probability"]) for p in r.json()["predictions"]]

    return ask


def tutorial_file(base_url: str) -> Ask:
    def ask(image: bytes, k: int) -> Answer:
        r = httpx.post(f"{base_url}/predict/file?topk={k}", files={"file": ("image.jpg", image)}, timeout=60)
        r.raise_for_status()
        return [(p["label"], p["prob"]) for p in r.json()["topk"]]

    return ask


def tutorial_b64(base_url: str) -> Ask:
    def ask(image: bytes, k: int) -> Answer:
        body = {"image_base64": base64.b64encode(image).decode(), "topk": k}
        r = httpx.post(f"{base_url}/predict/b64", json=body, timeout=60)
        r.raise_for_status()
        return [(p["label"], p["prob"]) for p in r.json()["topk"]]

    return ask


def every_way(grpc_address: str, http_url: str) -> dict[str, Ask]:
    return {
        "grpc Classify": grpc_classify(grpc_address),
        "grpc tutorial Predict": grpc_tutorial(grpc_address),
        "http /v1/classify": http_json(http_url),
        "http /v1/classify:upload": http_upload(http_url),
        "http /predict/file": tutorial_file(http_url),
        "http /predict/b64": tutorial_b64(http_url),
    }


def assert_parity(grpc_address: str, http_url: str, photos: dict[str, bytes]) -> None:
    """Every transport and route gives the gRPC Classify answer for each photo, equal as float32."""
    ways = every_way(grpc_address, http_url)
    for name, image in photos.items():
        answers = {way: ask(image, 5) for way, ask in ways.items()}
        reference = answers["grpc Classify"]
        assert len(reference) == 5
        for way, answer in answers.items():
            assert [label for label, _ in answer] == [label for label, _ in reference], (name, way)
            # Equal as float32: JSON carries the float32's shortest decimal form.
            assert np.array_equal(
                np.float32([p for _, p in answer]), np.float32([p for _, p in reference])
            ), (name, way, answer, reference)
