"""The Ray Serve peer: a FastAPI ingress deployment with @serve.batch, as Ray Serve's docs recommend.

    bench/.venvs/rayserve/bin/python -m bench.peers.rayserve_app --port P     (until SIGTERM/SIGINT)

Settings (all stated in bench/results/2cpu-resnet18-peers/report.md too):
- a local Ray with `num_cpus` = $PEER_THREADS (the CPU count), no dashboard, a 256 MiB object store;
- one replica (`num_replicas=1`) with `num_cpus` = $PEER_THREADS and torch on as many intra-op
  threads: a second replica would split two cores between two model copies;
- `max_ongoing_requests=64` so a closed loop of 16 is never queued at the proxy;
- `@serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)`: our server's batch size and
  wait, so the two batchers are configured alike;
- decoding and preprocessing per request in a worker thread (so they overlap inference), the
  batch's forward pass in a thread too (the replica's event loop keeps accepting requests).
"""

# No `from __future__ import annotations`: FastAPI reads these signatures in the replica process.

import argparse
import asyncio
import signal
import threading
from typing import Annotated

import ray
import torch
from fastapi import FastAPI, File, Form, UploadFile
from ray import serve

from bench.peers.common import MAX_BATCH_SIZE, THREADS, load_model, predict, preprocess

app = FastAPI()


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": THREADS}, max_ongoing_requests=64)
@serve.ingress(app)
class ImageClassifier:
    def __init__(self) -> None:
        self.model = load_model()

    @app.post("/classify")
    async def classify(self, file: Annotated[UploadFile, File()], top_k: Annotated[int, Form()] = 5) -> list[dict[str, object]]:
        tensor = await asyncio.to_thread(preprocess, await file.read())
        return (await self.infer(tensor))[:top_k]

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=0.002)
    async def infer(self, tensors: list[torch.Tensor]) -> list[list[dict[str, object]]]:
        return await asyncio.to_thread(predict, self.model, torch.stack(tensors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ray.init(num_cpus=THREADS, include_dashboard=False, object_store_memory=256 << 20)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(ImageClassifier.bind(), name="classify", route_prefix="/")
    print(f"rayserve_app: serving on 127.0.0.1:{args.port}", flush=True)
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
