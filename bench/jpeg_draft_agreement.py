"""JPEG draft decoding vs full decoding: top-1 agreement and decode time on large real photos.

Run: .venv/bin/python -m bench.jpeg_draft_agreement   (bundled efficientnet_lite0; results in README)
The test suite runs the same check (tests/e2e/models/test_jpeg_draft.py) and requires >= 99 % agreement.
"""

from __future__ import annotations

import io
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench.harness import real_photos
from service.core.images import ImageLimits, decode_image
from service.core.model_options import model_specs
from service.core.models import load_model


def large_jpeg_variants(per_photo: int = 40, seed: int = 7) -> list[bytes]:
    """Crops, flips and colour changes of real photos, upscaled 2-8x like phone uploads, as JPEGs."""
    rng = random.Random(seed)
    files = []
    for data in real_photos().values():
        image = Image.open(io.BytesIO(data)).convert("RGB")
        for _ in range(per_photo):
            w, h = image.size
            scale = rng.uniform(0.5, 1.0)
            cw, ch = int(w * scale), int(h * scale)
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            crop = image.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                crop = ImageOps.mirror(crop)
            crop = ImageEnhance.Color(crop).enhance(rng.uniform(0.7, 1.3))
            factor = rng.choice([2, 3, 4, 6, 8])
            crop = crop.resize((crop.width * factor, crop.height * factor), Image.Resampling.BICUBIC)
            out = io.BytesIO()
            crop.save(out, format="JPEG", quality=rng.choice([75, 85, 95]))
            files.append(out.getvalue())
    return files


@dataclass(frozen=True)
class DraftResult:
    images: int
    agreement: float
    full_ms: float
    draft_ms: float


def measure(files: list[bytes], draft_factor: int = 2) -> DraftResult:
    (spec,) = model_specs(["efficientnet_lite0"], resnet18_weights=Path("absent"))
    model = load_model(spec)
    pre, limits = model.preprocessing, ImageLimits(1 << 26, 10**8)
    started = time.perf_counter()
    full = np.stack([pre(decode_image(f, limits)) for f in files])
    full_s = time.perf_counter() - started
    started = time.perf_counter()
    draft = np.stack([pre(decode_image(f, limits, draft_factor * pre.resize_size)) for f in files])
    draft_s = time.perf_counter() - started
    same = model.backend.predict_proba(full).argmax(1) == model.backend.predict_proba(draft).argmax(1)
    return DraftResult(len(files), float(np.mean(same)), 1000 * full_s / len(files), 1000 * draft_s / len(files))


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    for factor in (1, 2):
        r = measure(large_jpeg_variants(), factor)
        print(f"draft >= {factor}x resize size: {r.images} large JPEGs, top-1 agreement {100 * r.agreement:.1f} %, "
              f"decode+preprocess {r.full_ms:.1f} ms -> {r.draft_ms:.1f} ms per image")
