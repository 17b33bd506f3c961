"""Body limits are enforced while reading: a 413 comes before the body is buffered."""

from __future__ import annotations

import socket

import httpx

from bench.harness import ServerProcess

LIMIT = 8 << 20  # the session server's --max-request-bytes


def _raw_request(server: ServerProcess, head: bytes, chunks: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: fine
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _length(reply):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        return reply


def _length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_declared_length_above_limit_is_413_without_sending_the_body(server: ServerProcess) -> None:
    """Only headers are sent: the answer cannot depend on reading the 1 GB body."""
    head = (
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\n\r\n"
    )
    reply = _raw_request(server, head, [])
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"code":8' in reply


def _chunked(pieces: list[bytes]) -> list[bytes]:
    return [b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces]


def test_chunked_json_body_is_cut_off_at_the_limit(server: ServerProcess) -> None:
    """No Content-Length: the gateway counts bytes as they arrive and stops at the limit."""
    head = (
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    pieces = [b'{"image": "'] + [b"A" * (1 << 20)] * 12  # 12 MiB > 8 MiB, never closed
    reply = _raw_request(server, head, _chunked(pieces))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_chunked_multipart_upload_is_cut_off_at_the_limit(server: ServerProcess) -> None:
    head = (
        b"POST /v1/classify:upload HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    reply = _raw_request(server, head, _chunked([part] + [b"\xff" * (1 << 20)] * 12))
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_server_keeps_serving_after_oversized_bodies(server: ServerProcess, photos: dict[str, bytes]) -> None:
    big = httpx.post(f"{server.http_url}/predict/file", files={"file": ("x", b"\0" * (LIMIT + 1))}, timeout=60)
    assert big.status_code == 413 and big.json()["code"] == 8
    ok = httpx.post(f"{server.http_url}/predict/file?topk=2", files={"file": ("x", photos["rocket.jpg"])}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["topk"]) == 2
