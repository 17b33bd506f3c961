"""Slow clients (slowloris) hold connections open without starving anyone else."""

from __future__ import annotations

import socket
import time

import grpc
import httpx

from bench.harness import ServerProcess
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

SLOW_CONNECTIONS = 64


def test_slowloris_does_not_starve_other_clients(server: ServerProcess, photos: dict[str, bytes]) -> None:
    slow: list[socket.socket] = []
    try:
        for i in range(SLOW_CONNECTIONS):
            # Half on each port: HTTP headers that never finish, and a gRPC preface that stops mid-way.
            port = server.http_port if i % 2 == 0 else server.grpc_port
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nX-Slow: " if i % 2 == 0 else b"PRI * HTTP/2.0\r\n")
            slow.append(sock)
        for round_ in range(3):  # keep trickling bytes while real clients are served
            for sock in slow:
                try:
                    sock.sendall(b"a")
                except OSError:
                    pass  # the server may drop a slow client: that is fine too
            started = time.monotonic()
            reply = httpx.post(f"{server.http_url}/predict/file?topk=1", files={"file": ("x", photos["rocket.jpg"])}, timeout=30)
            assert reply.status_code == 200
            with grpc.insecure_channel(server.grpc_address) as channel:
                answer = pb_grpc.ClassifierServiceStub(channel).Classify(pb.ClassifyRequest(image=photos["rocket.jpg"]), timeout=30)
            assert len(answer.predictions) == 5
            elapsed = time.monotonic() - started
            print(f"round {round_}: HTTP + gRPC answered in {1000 * elapsed:.0f} ms with {len(slow)} slow connections open")
            assert elapsed < 10
    finally:
        for sock in slow:
            sock.close()
