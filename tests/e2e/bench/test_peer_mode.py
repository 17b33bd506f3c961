"""The bench's peer mode drives a real HTTP server (a socket: not a unit test)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Annotated

import pytest
import uvicorn
from fastapi import FastAPI, File, Form, UploadFile

from bench.harness import free_port
from service.tools.bench.images import benchmark_images
from service.tools.bench.loadgen import Limits, closed_loop
from service.tools.bench.modes import Workload, open_mode


@pytest.fixture
def peer_like_server() -> Iterator[str]:
    """A real HTTP server with the peers' API shape (multipart `file`, form `top_k`), answering at most 3 classes."""
    app = FastAPI()

    @app.post("/classify")
    async def classify(file: Annotated[UploadFile, File()], top_k: Annotated[int, Form()] = 5) -> list[dict[str, object]]:
        size = len(await file.read())
        return [{"label": f"class {i}", "probability": 1.0 / (i + 2), "class_index": size % 1000} for i in range(min(top_k, 3))]

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_the_peer_mode_drives_a_real_http_server(peer_like_server: str) -> None:
    """The closed loop posts real photos as multipart and counts answers whose top-K has the asked length."""
    work = Workload(tuple(benchmark_images().values()), top_k=3)

    async def drive() -> tuple[int, dict[str, int]]:  # reads `work` when called
        mode = open_mode("peer-multipart", peer_like_server, work)
        try:
            result = await closed_loop(mode.send, Limits(4, 5.0, 20), target="p", mode="peer-multipart",
                                       bytes_per_image=mode.bytes_per_image())
        finally:
            await mode.aclose()
        return result.images, result.errors

    assert asyncio.run(drive()) == (20, {})
    work = Workload(work.images, top_k=5)  # 3 classes for 5 asked: an answer the mode must reject
    assert asyncio.run(drive()) == (0, {"INTERNAL": 20})
