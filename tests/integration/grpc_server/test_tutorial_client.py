"""The tutorial's RPC (classify.Classifier/Predict) over the shared service: defaults and errors."""

from __future__ import annotations

import grpc

from bench.harness import ServerProcess
from classify import classify_pb2 as tutorial_pb
from classify import classify_pb2_grpc as tutorial_grpc


def test_tutorial_rpc_defaults_and_errors(server: ServerProcess, photos: dict[str, bytes]) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = tutorial_grpc.ClassifierStub(channel)
        assert len(stub.Predict(tutorial_pb.ImageRequest(image=photos["coffee.png"]), timeout=30).topk) == 5
        try:
            stub.Predict(tutorial_pb.ImageRequest(image=b"junk", topk=5), timeout=30)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        else:
            raise AssertionError("junk bytes were accepted")
