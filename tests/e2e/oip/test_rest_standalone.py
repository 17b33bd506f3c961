"""The OIP's REST API through the standalone gateway, and the calls this server leaves out (501 on HTTP, UNIMPLEMENTED on gRPC)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from bench.harness import ServerProcess, skimage_photo
from tests.integration.oip.test_rest import INFER, _json_request


def test_standalone_gateway_forwards_oip(server: ServerProcess, standalone_gateway: str) -> None:
    """`classify gateway --grpc-upstream` forwards /v2 to the upstream's inference.GRPCInferenceService."""
    request = _json_request(skimage_photo("astronaut.png"))
    direct = httpx.post(server.http_url + INFER, json=request, timeout=60).json()
    forwarded = httpx.post(standalone_gateway + INFER, json=request, timeout=60).json()
    np.testing.assert_allclose(forwarded["outputs"][0]["data"], direct["outputs"][0]["data"], rtol=1e-4, atol=1e-6)
    assert httpx.get(standalone_gateway + "/v2/models/resnet18", timeout=30).json()["versions"] == ["1"]
    reply = httpx.get(standalone_gateway + "/v2/models/nope/config", timeout=30)
    assert reply.status_code == 404 and "nope" in reply.json()["error"]


UNIMPLEMENTED = [
    ("GET", "/v2/systemsharedmemory/status", "SystemSharedMemoryStatus"),
    ("GET", "/v2/systemsharedmemory/region/r0/status", "SystemSharedMemoryStatus"),
    ("POST", "/v2/systemsharedmemory/region/r0/register", "SystemSharedMemoryRegister"),
    ("POST", "/v2/systemsharedmemory/region/r0/unregister", "SystemSharedMemoryUnregister"),
    ("POST", "/v2/systemsharedmemory/unregister", "SystemSharedMemoryUnregister"),
    ("GET", "/v2/cudasharedmemory/status", "CudaSharedMemoryStatus"),
    ("POST", "/v2/cudasharedmemory/region/r0/register", "CudaSharedMemoryRegister"),
    ("POST", "/v2/cudasharedmemory/region/r0/unregister", "CudaSharedMemoryUnregister"),
    ("GET", "/v2/trace/setting", "TraceSetting"),
    ("POST", "/v2/trace/setting", "TraceSetting"),
    ("GET", "/v2/models/resnet18/trace/setting", "TraceSetting"),
    ("POST", "/v2/models/resnet18/versions/1/trace/setting", "TraceSetting"),
    ("GET", "/v2/logging", "LogSettings"),
    ("POST", "/v2/logging", "LogSettings"),
]


@pytest.mark.parametrize(("verb", "path", "method"), UNIMPLEMENTED, ids=[f"{v} {p}" for v, p, _ in UNIMPLEMENTED])
def test_unimplemented_calls_are_501_naming_the_call(
    server: ServerProcess, standalone_gateway: str, verb: str, path: str, method: str
) -> None:
    """Shared memory, trace and logging answer 501 {"error": "<the call> is not implemented ..."}, as gRPC's UNIMPLEMENTED says."""
    import grpc

    with grpc.insecure_channel(server.grpc_address) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    for base in (server.http_url, standalone_gateway):
        reply = httpx.request(verb, base + path, json={} if verb == "POST" else None, timeout=10)
        assert reply.status_code == 501, reply.text
        assert reply.json() == {"error": refused.value.details()}
        assert f"inference.GRPCInferenceService/{method} is not implemented" in reply.json()["error"]
