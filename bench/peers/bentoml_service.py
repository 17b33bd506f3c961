"""The BentoML peer: one service, adaptive batching, as BentoML's docs recommend for a CPU model.

    bench/.venvs/bentoml/bin/bentoml serve bench.peers.bentoml_service:ImageClassifier --host 127.0.0.1 --port P

Settings (all stated in bench/results/2cpu-resnet18-peers/report.md too):
- one worker process (`workers=1`): two would hold two copies of the model and split the two
  cores between two torch thread pools;
- `resources={"cpu": "2"}`: BentoML sizes the worker's thread pools (OMP/MKL) from it;
- torch intra-op threads = $PEER_THREADS (the CPU count), set at load;
- adaptive batching (`batchable=True`) with `max_batch_size` 8 (as our server's batches) and
  `max_latency_ms` 10 000 (a budget the dispatcher plans batches within, and sheds beyond:
  large enough that a closed loop of 16 is never shed);
- the image arrives as a multipart part `file` (BentoML decodes it to a PIL image); preprocessing
  runs in the batch, in the model's thread, as BentoML's image examples do.
"""

from __future__ import annotations

import bentoml
from PIL.Image import Image

from bench.peers.common import MAX_BATCH_SIZE, THREADS, load_model, predict, preprocess


@bentoml.service(workers=1, resources={"cpu": str(THREADS)}, traffic={"timeout": 120})
class ImageClassifier:
    def __init__(self) -> None:
        import torch

        self.model = load_model()
        self.torch = torch

    @bentoml.api(route="/classify", batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=10_000)
    def classify(self, file: list[Image]) -> list[list[dict[str, object]]]:
        batch = self.torch.stack([preprocess(image) for image in file])
        return predict(self.model, batch)
