"""OIP REST in the gateway: plain JSON with base64 images, error bodies, OpenAPI, and through --grpc-upstream."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import numpy as np
import pytest

from bench.harness import ServerProcess, skimage_photo

INFER = "/v2/models/resnet18/infer"


def _json_request(*images: bytes, classes: int = 0) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "req-1",
        "inputs": [{
            "name": "IMAGE", "shape": [len(images), 1], "datatype": "BYTES",
            "data": [base64.b64encode(i).decode() for i in images],
        }],
    }
    if classes:
        body["outputs"] = [{"name": "PROBABILITIES", "parameters": {"classification": classes}}]
    return body


def test_plain_json_with_base64_images(server: ServerProcess) -> None:
    photos = [skimage_photo("chelsea.png"), skimage_photo("rocket.jpg")]
    reply = httpx.post(server.http_url + INFER, json=_json_request(*photos), timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("resnet18", "1", "req-1")
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("PROBABILITIES", "FP32", [2, 1000])
    probabilities = np.array(output["data"], dtype=np.float32).reshape(2, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    top = httpx.post(server.http_url + "/v1/classify", json={"image": base64.b64encode(photos[1]).decode(), "topK": 1}, timeout=60).json()
    best = top["predictions"][0]
    assert int(np.argmax(probabilities[1])) == best["classIndex"]
    assert abs(float(probabilities[1].max()) - best["probability"]) < 1e-5


def test_classification_as_json_strings(server: ServerProcess) -> None:
    reply = httpx.post(server.http_url + INFER, json=_json_request(skimage_photo("coffee.png"), classes=2), timeout=60)
    [output] = reply.json()["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [1, 2]
    score, index, label = output["data"][0].split(":", 2)
    assert float(score) > 0 and 0 <= int(index) < 1000 and label


def test_binary_extension_by_hand(server: ServerProcess) -> None:
    """Header length, binary_data_size and a binary output, as Triton's extension defines them."""
    image = skimage_photo("chelsea.png")
    header = json.dumps({
        "inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(image) + 4}}],
        "outputs": [{"name": "PROBABILITIES", "parameters": {"binary_data": True}}],
    }).encode()
    reply = httpx.post(
        server.http_url + INFER, content=header + struct.pack("<I", len(image)) + image,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    length = int(reply.headers["Inference-Header-Content-Length"])
    head = json.loads(reply.content[:length])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 4000 == len(reply.content) - length
    assert abs(np.frombuffer(reply.content[length:], dtype="<f4").sum() - 1.0) < 1e-4


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        (INFER, {"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": ["%%%"]}]}, 400, "base64"),
        (INFER, {"inputs": []}, 400, "inputs"),
        (INFER, {"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": [base64.b64encode(b"junk").decode()]}]}, 400, "decoded"),
        ("/v2/models/nope/infer", {"inputs": [{"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": []}]}, 404, "nope"),
        ("/v2/models/resnet18/versions/7/infer", {"inputs": []}, 400, "inputs"),
        ("/v2/repository/models/resnet18/load", {}, 400, "--model-repository"),
    ],
)
def test_errors_are_oip_json(server: ServerProcess, path: str, body: object, status: int, fragment: str) -> None:
    reply = httpx.post(server.http_url + path, json=body, timeout=60)
    assert reply.status_code == status, reply.text
    assert set(reply.json()) == {"error"} and fragment in reply.json()["error"]


def test_unknown_version_and_bad_json(server: ServerProcess) -> None:
    reply = httpx.get(server.http_url + "/v2/models/resnet18/versions/7", timeout=30)
    assert reply.status_code == 404 and "version '7'" in reply.json()["error"]
    reply = httpx.post(server.http_url + INFER, content=b"{not json", timeout=30)
    assert reply.status_code == 400 and "invalid JSON" in reply.json()["error"]
    reply = httpx.post(server.http_url + INFER, content=b"{}", headers={"Inference-Header-Content-Length": "99"}, timeout=30)
    assert reply.status_code == 400 and "outside the body" in reply.json()["error"]
    reply = httpx.get(server.http_url + "/v2/no/such/route", timeout=30)
    assert reply.status_code == 404 and "error" in reply.json()


def test_oversize_body_is_413_in_oip_form(server: ServerProcess) -> None:
    reply = httpx.post(server.http_url + INFER, content=b"x" * (9 << 20), timeout=60)
    assert reply.status_code == 413 and "limit" in reply.json()["error"]


def test_health_bodies_and_statuses(server: ServerProcess) -> None:
    """KServe's SDK reads {"live": ...} / {"ready": ...}; 200 means true, 4xx false."""
    assert httpx.get(server.http_url + "/v2/health/live", timeout=30).json() == {"live": True}
    assert httpx.get(server.http_url + "/v2/health/ready", timeout=30).json() == {"ready": True}
    reply = httpx.get(server.http_url + "/v2/models/nope/ready", timeout=30)
    assert reply.status_code == 400 and reply.json() == {"name": "nope", "ready": False}


def test_every_route_is_in_openapi(server: ServerProcess) -> None:
    paths = httpx.get(server.http_url + "/openapi.json", timeout=30).json()["paths"]
    expected = {
        "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/stats", "/v2/repository/index",
        "/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/config", "/v2/models/{name}/stats",
        "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer",
    }
    assert expected <= set(paths)
    assert "application/json" in paths["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]


# Triton's REST routes for the calls this server leaves out (Triton's http_server.cc), with the gRPC method each is.
