"""Does OpenVINO fp32 earn a dependency beside ONNX Runtime fp32? The same exported graph, alternating rounds.

    .venv/bin/python -m bench.openvino_check > bench/results/openvino-check.txt     (about a minute, once the venv exists)

The service exports ResNet18's ONNX graph as it does when serving (random-init weights, as the tests use);
a child process in bench/.venvs/openvino (made here from bench/peers/openvino-requirements.txt; never
.venv) runs that graph on a batch of 8 real preprocessed photos with ONNX Runtime (the service's session
options: 2 intra-op threads, no spinning) and with OpenVINO (CPU, 2 threads, precision hint f32 so it
stays exact, latency hint), in alternating rounds, and prints images per second and how far apart the
probabilities are. Model alone: the end-to-end lead can only be smaller (decoding, transport and
batching cost the same on either).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from bench.peer_compare import REPO, VENVS, Peer, ensure_venv, load_average

OPENVINO = Peer("openvino", lambda python, port: [], "")
CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np, onnxruntime as ort, openvino as ov
    graph, batch_file, rounds, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    batch = np.load(batch_file)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(graph, "CPU", {"INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": "f32",
                                                      "PERFORMANCE_HINT": "LATENCY"})
    engines = {"onnxruntime": lambda: session.run(None, {"input": batch})[0],
               "openvino": lambda: compiled(batch)[compiled.output(0)]}
    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True)); return e / e.sum(axis=1, keepdims=True)
    ref, got = softmax(engines["onnxruntime"]()), softmax(engines["openvino"]())
    print(f"top-1 agreement {np.mean(ref.argmax(1) == got.argmax(1)):.0%} of {len(batch)}, "
          f"largest probability difference {np.abs(ref - got).max():.1e}")
    print(f"openvino {ov.__version__}, onnxruntime {ort.__version__}")
    for r in range(rounds):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        line = []
        for name in order:
            for _ in range(3): engines[name]()
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                engines[name](); n += 1
            line.append(f"{name} {n * len(batch) / (time.perf_counter() - start):.1f} img/s")
        print(f"round {r + 1}: " + ", ".join(line), flush=True)
""")


def main(argv: list[str]) -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    from bench.harness import random_resnet18_weights, real_photos
    from service.core.images import ImageLimits, decode_image
    from service.core.models import BackendOptions, ModelSpec, load_model

    python = ensure_venv(OPENVINO)
    with tempfile.TemporaryDirectory() as scratch:
        weights = random_resnet18_weights(Path(scratch))
        model = load_model(ModelSpec("resnet18", "resnet18", weights, backend="onnxruntime"), BackendOptions(threads=2))
        limits = ImageLimits(1 << 26, 10**8)
        photos = [model.preprocessing(decode_image(p, limits)) for p in real_photos().values()]
        np.save(Path(scratch) / "batch.npy", np.stack([photos[i % len(photos)] for i in range(8)]))
        print("# .venv/bin/python -m bench.openvino_check  (ResNet18 fp32 graph as the service exports it, batch 8, 2 threads)")
        print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; a shared machine: load average before "
              f"{load_average()} ({os.cpu_count()} CPUs)", flush=True)
        status = subprocess.run([str(python), "-c", CHILD, str(model.backend.path), str(Path(scratch) / "batch.npy"),  # type: ignore[attr-defined]
                                 "6", "5"], cwd=REPO, check=False).returncode
        print(f"# load average after {load_average()}")
        return status


if __name__ == "__main__":
    assert VENVS.name == ".venvs"
    sys.exit(main(sys.argv[1:]))
