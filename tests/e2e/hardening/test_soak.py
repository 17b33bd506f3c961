"""Soak: mixed valid and invalid traffic over both transports; no unexpected answer, flat memory.

60 s by default; set CLASSIFY_SOAK_SECONDS for a longer run.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import httpx
import pytest

from bench.harness import start_server
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

SECONDS = float(os.environ.get("CLASSIFY_SOAK_SECONDS", "60"))


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.timeout(SECONDS + 240)
def test_soak_mixed_traffic(weights: Path, tmp_path: Path, photos: dict[str, bytes]) -> None:
    server = start_server(weights, tmp_path)
    photo, b64 = photos["chelsea.png"], base64.b64encode(photos["chelsea.png"]).decode()
    grpc_cases = [
        (pb.ClassifyRequest(image=photo, top_k=3), "OK"),
        (pb.ClassifyRequest(image=photo[:5000]), "INVALID_ARGUMENT"),
        (pb.ClassifyRequest(image=b"\x00" * 3000), "INVALID_ARGUMENT"),
        (pb.ClassifyRequest(image=photo, top_k=-4), "INVALID_ARGUMENT"),
        (pb.ClassifyRequest(image=photo, model="gone"), "NOT_FOUND"),
    ]
    http_cases = [
        ({"json": {"image": b64, "topK": 2}}, 200),
        ({"json": {"image": "AAAA"}}, 400),
        ({"json": {"image": b64, "surprise": 1}}, 400),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"json": {"image": b64, "model": "gone"}}, 404),
    ]
    unexpected: list[str] = []
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    samples: list[int] = []
    started = time.monotonic()
    end = started + SECONDS

    def grpc_worker() -> None:
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.ClassifierServiceStub(channel)
            i = 0
            while time.monotonic() < end:
                request, expected = grpc_cases[i % len(grpc_cases)]
                i += 1
                try:
                    reply = stub.Classify(request, timeout=30)
                    got = "OK" if reply.predictions else "empty"
                except grpc.RpcError as error:
                    got = error.code().name
                with lock:
                    counts["grpc " + got] += 1
                    if got != expected:
                        unexpected.append(f"grpc {request.top_k} {request.model!r}: {got}")

    def http_worker() -> None:
        with httpx.Client(base_url=server.http_url, timeout=30) as client:
            i = 0
            while time.monotonic() < end:
                kwargs, expected = http_cases[i % len(http_cases)]
                i += 1
                got = client.post("/v1/classify", **kwargs).status_code
                with lock:
                    counts[f"http {got}"] += 1
                    if got != expected:
                        unexpected.append(f"http {kwargs.get('json', {}).keys()}: {got}")

    threads = [threading.Thread(target=grpc_worker) for _ in range(2)]
    threads += [threading.Thread(target=http_worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    warm_up = started + min(10.0, SECONDS / 4)
    while time.monotonic() < end:
        if time.monotonic() >= warm_up:
            samples.append(_rss_bytes(server.process.pid))
        time.sleep(1.0)
    for thread in threads:
        thread.join(60)
    try:
        assert not unexpected, unexpected[:10]
        baseline, final = samples[0], samples[-1]
        growth = (final - baseline) / baseline
        total = sum(counts.values())
        print(f"soak {SECONDS:.0f} s: {total} requests {dict(counts)}; RSS {baseline / 2**20:.0f} -> "
              f"{final / 2**20:.0f} MiB ({100 * growth:+.1f} %), peak {max(samples) / 2**20:.0f} MiB")
        assert growth < 0.10, f"RSS grew {100 * growth:.1f} %"
        assert total > 50
    finally:
        assert server.stop() == 0
