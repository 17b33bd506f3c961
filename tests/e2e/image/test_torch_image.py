"""The torch target (`make image-torch`): torch inside, .pth weights on a read-only volume exported at start.

Run as the slim image is (read-only root, the Deployment's user and CPU limit; a memory limit 1 GiB higher). Its reason to exist
beside the slim image: the torch backends (cuda-fp16 needs a GPU, so here only the import is
checked) and weights files mounted at start, whose ONNX graph the first start exports into
--cache-dir (a writable volume) rather than beside the read-only weights.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from bench import containers
from bench.containers import BUILD_TIMEOUT_S, deployment_pod_spec
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc
from tests.e2e.image.figures import record

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 900)

GRPC_PORT = 50051
TORCH_MEMORY_MIB = 2560


def test_torch_image_holds_torch(docker: str, torch_image: str) -> None:
    size = int(subprocess.run([docker, "image", "inspect", "--format", "{{.Size}}", torch_image],
                              capture_output=True, text=True, timeout=60, check=True).stdout)
    probe = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--label", containers.LABEL, "--entrypoint", "python", torch_image,
         "-c", "import torch, torchvision, timm, onnx; print(torch.__version__, torch.version.cuda or 'cpu')"],
        capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    version, cuda = probe.stdout.split()
    record("torch image size", f"{torch_image}: {size / 1e9:.2f} GB ({size} bytes), torch {version} "
           f"({'CPU-only build' if cuda == 'cpu' else f'CUDA {cuda} build'})")


def test_read_only_weights_volume_is_exported_into_cache_dir(
    docker: str, torch_image: str, weights: Path, photos: dict[str, bytes], tmp_path: Path
) -> None:
    """Weights mounted read-only: the first start exports their ONNX graph into --cache-dir, not beside them."""
    security = deployment_pod_spec()["securityContext"]
    volume, cache = tmp_path / "weights", tmp_path / "cache"
    volume.mkdir()
    cache.mkdir()
    shutil.copy(weights, volume / weights.name)
    volume.chmod(0o755)
    shutil.chown(cache, security["runAsUser"], security["runAsGroup"])
    # The Deployment's limit is sized for the torch-free image; torch and a start-up export need
    # about 1 GiB more (docs/deployment.md). A later --memory wins over the Deployment's.
    container = containers.run(
        docker, torch_image, "-v", f"{volume}:/app/weights:ro", "-v", f"{cache}:/cache", "--memory", f"{TORCH_MEMORY_MIB}m",
        "-e", f"CLASSIFY_WEIGHTS=/app/weights/{weights.name}",
        command=("--backend", "onnxruntime", "--cache-dir", "/cache"),
    )
    try:
        seconds = container.wait_healthy()
        record("torch image cold start", f"{seconds:.1f} s from `docker run` to healthy, ResNet18 weights mounted "
               "read-only, exported to ONNX by this start")
        stub = pb_grpc.ClassifierServiceStub(grpc.insecure_channel(f"127.0.0.1:{container.port(GRPC_PORT)}"))
        answer = stub.Classify(pb.ClassifyRequest(image=photos["chelsea.png"], top_k=3), timeout=60)
        assert answer.model == "resnet18" and len(answer.predictions) == 3
        model = stub.GetModel(pb.GetModelRequest(name="resnet18"), timeout=30).model
        assert model.backend == "onnxruntime"
        graphs = [p.name for p in cache.iterdir()]
        assert any(re.fullmatch(rf"resnet18-{model.weights_sha256[:16]}-fp32-.*\.onnx", g) for g in graphs), graphs
        assert [p.name for p in volume.iterdir()] == [weights.name], "something was written beside the weights"
    finally:
        container.remove()
