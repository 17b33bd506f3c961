"""The tutorial's client script, run as its users run it (its own process, its own generated code), against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
from google.protobuf import text_format

from bench.harness import REPO, ServerProcess
from classify import classify_pb2 as tutorial_pb
from classify import classify_pb2_grpc as tutorial_grpc

# The tutorial's proto, verbatim, as kept with the rebuilt tutorial baseline.
TUTORIAL_PROTO = (REPO / "bench" / "tutorial_baseline" / "grpc_app" / "protos" / "classify.proto").read_text()
# The tutorial's client script, verbatim but for the server address.
TUTORIAL_CLIENT = """\
import grpc, classify_pb2, classify_pb2_grpc
with open("image.jpg", "rb") as f:
    data = f.read()
channel = grpc.insecure_channel("127.0.0.1:50051")
stub = classify_pb2_grpc.ClassifierStub(channel)
resp = stub.Predict(classify_pb2.ImageRequest(image=data, topk=5))
print(resp)
"""


def test_tutorial_client_script_gets_five_sorted_predictions(
    server: ServerProcess, photos: dict[str, bytes], tmp_path: Path
) -> None:
    (tmp_path / "classify.proto").write_text(TUTORIAL_PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--grpc_python_out=.", "classify.proto"],
        cwd=tmp_path, check=True,
    )
    (tmp_path / "image.jpg").write_bytes(photos["rocket.jpg"])
    script = TUTORIAL_CLIENT.replace("127.0.0.1:50051", server.grpc_address)
    (tmp_path / "client.py").write_text(script)
    # The script imports the tutorial's top-level classify_pb2, not our classify package.
    run = subprocess.run([sys.executable, "client.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    printed = text_format.Parse(run.stdout, tutorial_pb.PredictionResponse())
    probs = [p.prob for p in printed.topk]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)
    # The same answer as our own stub of the same RPC.
    with grpc.insecure_channel(server.grpc_address) as channel:
        ours = tutorial_grpc.ClassifierStub(channel).Predict(
            tutorial_pb.ImageRequest(image=photos["rocket.jpg"], topk=5), timeout=30
        )
    assert [p.label for p in ours.topk] == [p.label for p in printed.topk]
