# ruff: noqa  (the tutorial's code as written: its style is part of the copy, not ours to fix)
# Measurement baseline, copied from the tutorial's grpc_app/server.py. NOT part of the
# service; never deploy it (see ../README.md). Changes, all marked "baseline harness":
# protos/classify.proto is compiled into a temporary directory at start (the tutorial ran
# grpc_tools.protoc by hand), and the listening address comes from TUTORIAL_GRPC_PORT
# (and TUTORIAL_GRPC_HOST, default the tutorial's "[::]") instead of "[::]:50051".
import atexit
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path


def _compile_proto() -> None:  # baseline harness
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="tutorial-baseline-proto-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    protos = Path(__file__).resolve().parent / "protos"
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{protos}",
        f"-I{resources.files('grpc_tools') / '_proto'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(protos / "classify.proto"),
    ])
    if status != 0:
        raise SystemExit(f"grpc_tools.protoc failed on {protos / 'classify.proto'} (exit {status})")
    sys.path.insert(0, out)


_compile_proto()

import grpc
from concurrent import futures
import classify_pb2, classify_pb2_grpc
from infer import predict_bytes


class ClassifierServicer(classify_pb2_grpc.ClassifierServicer):
    def Predict(self, request, context):
        preds = predict_bytes(request.image, topk=request.topk or 5)
        return classify_pb2.PredictionResponse(
            topk=[classify_pb2.Prediction(label=l, prob=p) for l, p in preds]
        )


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    classify_pb2_grpc.add_ClassifierServicer_to_server(ClassifierServicer(), server)
    host = os.environ.get("TUTORIAL_GRPC_HOST", "[::]")  # baseline harness
    server.add_insecure_port(f"{host}:{os.environ.get('TUTORIAL_GRPC_PORT', '50051')}")  # baseline harness
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    serve()
