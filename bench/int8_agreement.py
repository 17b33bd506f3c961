"""int8 vs fp32 top-1 agreement of the bundled EfficientNet-Lite0, through `classify quantize`'s own code.

Run: .venv/bin/python -m bench.int8_agreement   (about 2 minutes on 2 cores; results in bench/results/TARGETS.md)

Calibration and evaluation use different photos. Evaluation: seven real photos with
ImageNet classes (scikit-image, scikit-learn, matplotlib) and 30 augmented variants of
each (crop keeping 70-100 % of each side, mirror, rescale 0.6-1.4x, brightness, contrast
and saturation 0.8-1.2x, JPEG re-encode). Calibration: variants of other photos. The
report splits agreement by how sure fp32 itself was (its top-1 minus top-2 probability),
since int8 noise flips near-ties first.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench.harness import matplotlib_photo, skimage_photo, sklearn_photo
from service.core.images import ImageLimits, decode_image
from service.core.models import LoadedModel
from service.settings import Settings
from service.tools.quantize import quantize_model

EVALUATION = {
    "chelsea.png": skimage_photo,
    "coffee.png": skimage_photo,
    "rocket.jpg": skimage_photo,
    "camera.png": skimage_photo,
    "motorcycle_left.png": skimage_photo,
    "grace_hopper.jpg": matplotlib_photo,
    "china.jpg": sklearn_photo,
}
CALIBRATION = {"astronaut.png": skimage_photo, "motorcycle_right.png": skimage_photo, "flower.jpg": sklearn_photo}
LIMITS = ImageLimits(max_bytes=1 << 26, max_pixels=10**8)


def variants(photo: bytes, count: int, rng: random.Random) -> list[bytes]:
    """Crops, mirrors, rescales and colour changes of one photo, as JPEG files."""
    image = decode_image(photo, LIMITS)
    out = []
    for _ in range(count):
        w, h = image.size
        cw, ch = int(w * rng.uniform(0.7, 1.0)), int(h * rng.uniform(0.7, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = image.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        scale = rng.uniform(0.6, 1.4)
        crop = crop.resize((max(1, int(cw * scale)), max(1, int(ch * scale))), Image.Resampling.BILINEAR)
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            crop = enhance(crop).enhance(rng.uniform(0.8, 1.2))
        encoded = io.BytesIO()
        crop.save(encoded, format="JPEG", quality=90)
        out.append(encoded.getvalue())
    return out


def evaluation_set(per_photo: int = 30, seed: int = 1) -> tuple[list[str], list[bytes]]:
    rng = random.Random(seed)
    names, files = [], []
    for name, load in EVALUATION.items():
        photo = load(name)
        for file in [photo, *variants(photo, per_photo, rng)]:
            names.append(name)
            files.append(file)
    return names, files


def write_calibration(directory: Path, per_photo: int = 40, seed: int = 0) -> int:
    rng = random.Random(seed)
    count = 0
    for name, load in CALIBRATION.items():
        for i, file in enumerate(variants(load(name), per_photo, rng)):
            (directory / f"{name}-{i}.jpg").write_bytes(file)
            count += 1
    return count


def images_per_second(model: LoadedModel, batch: np.ndarray, repeats: int = 10) -> float:
    model.backend.predict_proba(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        model.backend.predict_proba(batch)
    return repeats * len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signed-activations", action="store_true", help="as `classify quantize --signed-activations`")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from service.core.model_options import model_specs
    from service.core.models import BackendOptions, load_model

    settings = Settings(model=["efficientnet_lite0"], torch_threads=args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        calibration = write_calibration(Path(scratch))
        result = quantize_model(
            "efficientnet_lite0", Path(scratch), settings, signed_activations=args.signed_activations
        )
    (spec,) = model_specs(["efficientnet_lite0"], resnet18_weights=settings.weights)
    options = BackendOptions(cache_dir=settings.cache_dir, threads=args.threads)
    fp32 = load_model(dataclasses.replace(spec, backend="onnxruntime"), options)
    int8 = load_model(dataclasses.replace(spec, backend="onnxruntime-int8"), options)

    names, files = evaluation_set()
    inputs = np.stack([fp32.preprocessing(decode_image(f, LIMITS)) for f in files])
    p32, p8 = fp32.backend.predict_proba(inputs), int8.backend.predict_proba(inputs)
    agree = p32.argmax(1) == p8.argmax(1)
    top2 = np.sort(p32, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]

    print(
        f"int8 graph: {result.int8_graph.name} (static QDQ, per-channel weights, "
        f"{'signed symmetric' if args.signed_activations else 'unsigned'} activations), "
        f"calibrated on {calibration} variants of {', '.join(CALIBRATION)}"
    )
    print(f"evaluation: {len(files)} images ({len(EVALUATION)} photos and {len(files) - len(EVALUATION)} variants)")
    print(f"top-1 agreement int8 vs fp32: {100 * agree.mean():.1f} % ({int((~agree).sum())} differ)")
    for low, high in ((0.0, 0.05), (0.05, 0.1), (0.1, 1.01)):
        chosen = (margin >= low) & (margin < high)
        if chosen.any():
            print(
                f"  where fp32's top-1 leads its top-2 by {low:.2f}-{min(high, 1):.2f}: "
                f"{100 * agree[chosen].mean():.1f} % of {int(chosen.sum())}"
            )
    for name in EVALUATION:
        mine = np.array([n == name for n in names])
        print(f"  {name}: {int((~agree[mine]).sum())} of {int(mine.sum())} differ")
    batch = inputs[:8]
    print(
        f"model only, batch 8, {args.threads} threads: fp32 {images_per_second(fp32, batch):.0f} img/s, "
        f"int8 {images_per_second(int8, batch):.0f} img/s"
    )


if __name__ == "__main__":
    main()
