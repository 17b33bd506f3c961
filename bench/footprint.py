"""The memory footprint that sizes deploy/kubernetes' requests and limits, for the torch-free server.

`classify serve --model GRAPH.onnx` (an exported ResNet18, no torch loaded, as the slim image
serves it) on 2 CPUs: RSS idle, the peak (VmHWM) while 400 requests arrive 8 at a time (300
gRPC Classify + 100 HTTP POST /v1/classify of real photos), then the peak while 24 requests of
a 49-megapixel JPEG (just under --max-image-pixels; decoded at a reduced DCT scale) arrive 8 at a
time, then the same with a 49-megapixel PNG (a smooth gradient: 1.6 MB, under --max-image-bytes,
and decoded in full: the worst input). Three runs; the figures go to bench/results/footprint-slim.txt.

    python -m bench.footprint --weights weights/resnet18-seed0-....pth [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
from PIL import Image

from bench.harness import REPO, real_photos, start_server
from classify.v1 import classify_pb2 as pb
from classify.v1 import classify_pb2_grpc as pb_grpc

OUT = REPO / "bench" / "results" / "footprint-slim.txt"
MIB = 1 << 20


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _big_jpeg() -> bytes:
    """A 49-megapixel JPEG (7000 x 7000) made from a real photo: just under the default --max-image-pixels."""
    photo = Image.open(io.BytesIO(real_photos()["astronaut.png"])).convert("RGB").resize((7000, 7000))
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _big_png() -> bytes:
    """A 49-megapixel PNG that compresses to 1.6 MB (a smooth gradient): PNGs decode in full."""
    ramp = np.linspace(0, 255, 7000, dtype=np.float32)
    pixels = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 255 - ramp) / 2, np.add.outer(255 - ramp, ramp) / 2], -1
    ).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _load(grpc_address: str, http_url: str, images: list[bytes], count: int, grpc_share: float) -> None:
    """``count`` requests, 8 at a time, ``grpc_share`` of them over gRPC, the rest over HTTP."""
    channel = grpc.insecure_channel(grpc_address, options=[("grpc.max_send_message_length", 64 * MIB)])
    stub = pb_grpc.ClassifierServiceStub(channel)
    http = httpx.Client(timeout=300)

    def one(i: int) -> None:
        image = images[i % len(images)]
        if i % 100 < grpc_share * 100:
            stub.Classify(pb.ClassifyRequest(image=image), timeout=300)
        else:
            reply = http.post(f"{http_url}/v1/classify", json={"image": base64.b64encode(image).decode()})
            reply.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    channel.close()
    http.close()


def run_once(graph: Path, weights: Path, work: Path, big: bytes, png: bytes) -> dict[str, float]:
    server = start_server(weights, work, "--model", str(graph), "--max-request-bytes", str(64 * MIB))
    try:
        pid = server.process.pid
        assert "libtorch" not in Path(f"/proc/{pid}/maps").read_text(), "the exported graph must serve without torch"
        time.sleep(1.0)
        idle = _status_kib(pid, "VmRSS") / 1024
        photos = list(real_photos().values())
        _load(server.grpc_address, server.http_url, photos, 400, 0.75)
        steady = _status_kib(pid, "VmHWM") / 1024
        _load(server.grpc_address, server.http_url, [big], 24, 0.75)
        worst = _status_kib(pid, "VmHWM") / 1024
        _load(server.grpc_address, server.http_url, [png], 24, 0.75)
        worst_png = _status_kib(pid, "VmHWM") / 1024
        after = _status_kib(pid, "VmRSS") / 1024
    finally:
        server.stop()
    return {"idle": idle, "steady_peak": steady, "worst_peak": worst, "worst_png": worst_png, "after": after}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, type=Path, help="a ResNet18 state dict to export and serve")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "service.cli", "export", f"resnet18=resnet18:{args.weights}", "--out", str(work)],
            cwd=REPO, check=True, capture_output=True,
        )
        graph = work / "resnet18.onnx"
        big, png = _big_jpeg(), _big_png()
        runs = [run_once(graph, args.weights, work / f"run{i}", big, png) for i in range(args.runs)]
    lines = [
        f"# python -m bench.footprint --weights {args.weights.name} --runs {args.runs}",
        f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        "# classify serve --model resnet18.onnx (exported, no torch loaded); MiB",
        "run  idle  peak(400 photos, 8 at a time)  peak(24 x 49 MP JPEG)  peak(24 x 49 MP PNG)  after",
    ]
    lines += [
        f"{i + 1:>3}  {r['idle']:4.0f}  {r['steady_peak']:29.0f}  {r['worst_peak']:20.0f}  {r['worst_png']:19.0f}  {r['after']:5.0f}"
        for i, r in enumerate(runs)
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
