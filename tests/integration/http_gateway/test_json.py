"""The gateway speaks proto3's canonical JSON mapping."""

from __future__ import annotations

import base64

import httpx
import pytest
from google.protobuf import json_format

from classify.v1 import classify_pb2 as pb


def test_response_round_trips_through_the_generated_message(http: httpx.Client, photos: dict[str, bytes]) -> None:
    """The JSON parses strictly into ClassifyResponse and serialises back to the same document."""
    document = http.post("/v1/classify", json={"image": base64.b64encode(photos["coffee.png"]).decode(), "topK": 3}).json()
    message = json_format.ParseDict(document, pb.ClassifyResponse())
    assert json_format.MessageToDict(message, always_print_fields_with_no_presence=True) == document
    assert set(document) == {"predictions", "model", "modelVersion"}  # camelCase out
    assert set(document["predictions"][0]) == {"label", "probability", "classIndex"}


@pytest.mark.parametrize("top_k_name", ["topK", "top_k"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_both_field_name_styles_and_base64_alphabets_are_accepted(
    top_k_name: str, encode: object, http: httpx.Client, photos: dict[str, bytes]
) -> None:
    image = encode(photos["astronaut.png"]).decode()  # type: ignore[operator]
    response = http.post("/v1/classify", json={"image": image, top_k_name: 2})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


def test_unknown_field_is_400(http: httpx.Client) -> None:
    response = http.post("/v1/classify", json={"image": "", "topk": 2})
    assert response.status_code == 400
    assert response.json()["code"] == 3 and "no field named \"topk\"" in response.json()["message"]


@pytest.mark.parametrize(
    "body", ['{"image": 5}', '{"topK": "many"}', "[1, 2]", "not json", '{"image": "***"}']
)
def test_malformed_json_is_400(body: str, http: httpx.Client) -> None:
    response = http.post("/v1/classify", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 3


def test_batch_route_carries_per_image_errors(http: httpx.Client, photos: dict[str, bytes]) -> None:
    good = base64.b64encode(photos["rocket.jpg"]).decode()
    response = http.post(
        "/v1/classify:batch", json={"requests": [{"image": good, "topK": 1}, {"image": "AAAA"}]}
    )
    assert response.status_code == 200
    first, second = response.json()["results"]
    assert len(first["response"]["predictions"]) == 1 and "error" not in first
    assert second["error"]["code"] == 3 and "response" not in second


def test_model_routes(http: httpx.Client) -> None:
    listing = http.get("/v1/models").json()
    assert listing["defaultModel"] == "resnet18"
    assert listing["models"][0]["numClasses"] == 1000
    assert http.get("/v1/models/resnet18").json()["model"] == listing["models"][0]
