"""Calls a server with NVIDIA's own tritonclient and prints what it saw, as JSON.

Runs in .venv-oip (tritonclient pins protobuf < 7, so it cannot share .venv);
the tests in this folder start it as a subprocess and judge its output. It
imports nothing from this repository: it is a user's script.

    python triton_driver.py grpc|http HOST:PORT MODEL PHOTO... [--token T] [--scenario all|auth]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def _error(call: Callable[[], Any]) -> dict[str, Any]:
    """The status and message a failing call raised (or that it did not fail)."""
    try:
        call()
    except InferenceServerException as error:
        return {"status": str(error.status()), "message": error.message()}
    return {"status": "no error"}


def _images(photos: list[bytes]) -> np.ndarray:
    return np.array([[p] for p in photos], dtype=np.object_)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("protocol", choices=("grpc", "http"))
    parser.add_argument("url")
    parser.add_argument("model")
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--token")
    parser.add_argument("--admin-token")
    parser.add_argument("--scenario", default="all", choices=("all", "auth", "repository"))
    args = parser.parse_args()
    lib: Any = grpcclient if args.protocol == "grpc" else httpclient
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    client = lib.InferenceServerClient(args.url)
    photos = [p.read_bytes() for p in args.photos]

    def infer(images: np.ndarray, *, classes: int = 0, datatype: str = "BYTES", model: str = args.model,
              shape: list[int] | None = None, send_headers: dict[str, str] | None = headers, version: str = "") -> Any:
        tensor = lib.InferInput("IMAGE", shape or list(images.shape), datatype)
        tensor.set_data_from_numpy(images)
        outputs = [lib.InferRequestedOutput("PROBABILITIES", class_count=classes)]
        return client.infer(model, [tensor], outputs=outputs, headers=send_headers, model_version=version)

    seen: dict[str, Any] = {}
    if args.scenario == "repository":
        admin = {"authorization": f"Bearer {args.admin_token}"}
        as_json = {"as_json": True} if args.protocol == "grpc" else {}

        def index() -> list[dict[str, Any]]:
            found = client.get_model_repository_index(headers=headers, **as_json)
            return found.get("models", []) if isinstance(found, dict) else found  # an empty index is {}

        def answered_by(version: str = "") -> str:
            return infer(_images(photos[:1]), version=version).get_response(**as_json)["model_version"]

        seen["index_before"] = index()
        seen["load_without_admin"] = _error(lambda: client.load_model(args.model, headers=headers))
        client.load_model(args.model, headers=admin)  # picks up the version folder added meanwhile
        seen["index_loaded"] = index()
        seen["metadata_versions"] = client.get_model_metadata(args.model, headers=headers, **as_json)["versions"]
        seen["answered_unpinned"] = answered_by()
        seen["answered_pinned_1"] = answered_by("1")
        seen["pinned_unknown"] = _error(lambda: answered_by("9"))
        client.unload_model(args.model, headers=admin)
        seen["index_unloaded"] = index()
        seen["after_unload"] = _error(lambda: answered_by())
        seen["ready_after_unload"] = client.is_model_ready(args.model, headers=headers)
        print(json.dumps(seen))
        return
    if args.scenario == "auth":
        # Health is open; everything else needs the token.
        seen["live_without_token"] = client.is_server_live()
        seen["ready_without_token"] = client.is_server_ready()
        seen["infer_without_token"] = _error(lambda: infer(_images(photos[:1]), send_headers=None))
        seen["metadata_without_token"] = _error(lambda: client.get_model_metadata(args.model))
        seen["infer_with_token"] = list(infer(_images(photos[:1])).as_numpy("PROBABILITIES").shape)
        print(json.dumps(seen))
        return

    seen["live"] = client.is_server_live(headers=headers)
    seen["ready"] = client.is_server_ready(headers=headers)
    seen["model_ready"] = client.is_model_ready(args.model, headers=headers)
    seen["unknown_model_ready"] = client.is_model_ready("no-such-model", headers=headers)
    as_json = {"as_json": True} if args.protocol == "grpc" else {}
    seen["server_metadata"] = client.get_server_metadata(headers=headers, **as_json)
    seen["model_metadata"] = client.get_model_metadata(args.model, headers=headers, **as_json)
    config = client.get_model_config(args.model, headers=headers, **as_json)
    seen["model_config"] = config.get("config", config)  # gRPC wraps it in {"config": ...}

    single = infer(_images(photos[:1]))
    response = single.get_response(**as_json)
    seen["single"] = {
        "shape": list(single.as_numpy("PROBABILITIES").shape),
        "datatype": response["outputs"][0]["datatype"],
        "probabilities": single.as_numpy("PROBABILITIES")[0].tolist(),
        "model_name": response["model_name"],
        "model_version": response["model_version"],
    }
    batch = infer(_images(photos[:4]))
    seen["batch"] = batch.as_numpy("PROBABILITIES").tolist()
    classified = infer(_images(photos[:4]), classes=3).as_numpy("PROBABILITIES")
    seen["classification"] = [[v.decode() if isinstance(v, bytes) else v for v in row] for row in classified]

    seen["errors"] = {
        "garbage": _error(lambda: infer(_images([b"these bytes are not an image"]))),
        "unknown_model": _error(lambda: infer(_images(photos[:1]), model="no-such-model")),
        "wrong_datatype": _error(lambda: infer(np.zeros((1, 1), dtype=np.float32), datatype="FP32")),
        "wrong_shape": _error(lambda: infer(_images(photos[:2]).reshape(1, 2))),
        "too_many_images": _error(lambda: infer(_images([b"tiny"] * 65))),
        "oversize": _error(lambda: infer(_images([b"\xff\xd8" + bytes(9 << 20)]))),
    }
    if args.protocol == "grpc":
        seen["errors"]["unimplemented"] = _error(lambda: client.get_system_shared_memory_status(headers=headers))
    # Still serving after every error above.
    seen["after_errors"] = infer(_images(photos[:1])).as_numpy("PROBABILITIES")[0].tolist()

    statistics = client.get_inference_statistics(args.model, headers=headers, **as_json)
    seen["statistics"] = statistics["model_stats"][0]
    seen["repository_index"] = client.get_model_repository_index(headers=headers, **as_json)
    print(json.dumps(seen))


if __name__ == "__main__":
    sys.exit(main())
