"""Python client of ``classify.v1.ClassifierService`` (gRPC or HTTP, sync or asyncio), without the server.

    from classify_client import Client
    with Client("127.0.0.1:50051") as client:
        top = client.classify(open("cat.jpg", "rb").read(), top_k=3)
"""

from importlib.metadata import PackageNotFoundError, version

from classify_client._proto.classify.v1 import classify_pb2 as _pb
from classify_client.client import NO_RETRY, AsyncClient, ClassifyError, Client, RetryPolicy, to_proto_json
from classify_client.models.classify.v1 import (
    ClassifyResponse,
    ListModelsResponse,
    ModelInfo,
    Prediction,
)

#: The proto package this client speaks, read from the generated descriptor.
API_PACKAGE: str = _pb.DESCRIPTOR.package

try:
    __version__ = version("classify-client")
except PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "API_PACKAGE",
    "NO_RETRY",
    "AsyncClient",
    "ClassifyError",
    "ClassifyResponse",
    "Client",
    "ListModelsResponse",
    "ModelInfo",
    "Prediction",
    "RetryPolicy",
    "to_proto_json",
]
