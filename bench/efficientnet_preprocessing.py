"""Compare preprocessing variants for the EfficientNet-Lite0 weights on offline real photos.

Usage: .venv/bin/python bench/efficientnet_preprocessing.py [--arch efficientnet_lite0 tf_efficientnet_lite0] [--full] [--exclude NAME ...]
(grace_hopper needs matplotlib installed; it is skipped otherwise). Results: docs/efficientnet_lite0.md.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

import numpy as np
import skimage.data
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision.models import ResNet18_Weights
from torchvision.transforms import functional as TF

from service.core import efficientnet_lite0


def build_model(arch: str) -> torch.nn.Module:
    """The bundled weights, mapped by the service's own code onto timm's ``arch``."""
    import timm

    state = torch.load(efficientnet_lite0.bundled_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(efficientnet_lite0.map_state_dict(state, model.state_dict()), strict=True)
    return model.eval()

CATEGORIES: list[str] = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]

# acceptable ImageNet-1k indices per photo (empty -> printed but not scored)
ACCEPT: dict[str, set[int]] = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee": {967, 968},  # espresso, cup
    "rocket": {657, 744},  # missile, projectile
    "grace_hopper": {652, 457, 906},  # military uniform, bow tie, Windsor tie
    "china": {698, 663, 832},  # palace, monastery, stupa
    "motorcycle": {665, 670},  # moped, motor scooter
    "camera": {872, 759},  # tripod, reflex camera
    "astronaut": set(),  # no astronaut / spacesuit class
    "flower": set(),  # dahlia: no ImageNet class
}


def load_images() -> dict[str, Image.Image]:
    imgs: dict[str, np.ndarray] = {
        "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
        "rocket": skimage.data.rocket(),
        "astronaut": skimage.data.astronaut(),
        "camera": skimage.data.camera(),  # grayscale -> replicated to RGB
        "motorcycle": skimage.data.stereo_motorcycle()[0],
    }
    sk = load_sample_images()
    for fn, im in zip(sk.filenames, sk.images, strict=True):
        imgs[os.path.splitext(os.path.basename(fn))[0]] = im  # china, flower
    try:
        import matplotlib

        sd = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
        imgs["grace_hopper"] = np.asarray(Image.open(os.path.join(sd, "grace_hopper.jpg")))
    except ImportError:
        pass
    return {k: Image.fromarray(imgs[k]).convert("RGB") for k in ACCEPT if k in imgs}


NORMS = {
    "imnet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tf127": ((127 / 255,) * 3, (128 / 255,) * 3),
}
RESIZES = {"r256c224": 256, "r224c224": 224}
INTERPS = {"bilinear": TF.InterpolationMode.BILINEAR, "bicubic": TF.InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class Cfg:
    norm: str
    resize: str
    interp: str

    def __str__(self) -> str:
        return f"{self.norm}/{self.resize}/{self.interp}"


CONFIGS = [Cfg(n, r, i) for n in NORMS for r in RESIZES for i in INTERPS]


def preprocess(img: Image.Image, cfg: Cfg) -> torch.Tensor:
    x = TF.resize(img, RESIZES[cfg.resize], interpolation=INTERPS[cfg.interp], antialias=True)
    x = TF.center_crop(x, 224)
    t = TF.to_tensor(x)
    mean, std = NORMS[cfg.norm]
    return TF.normalize(t, mean, std)


def short(i: int) -> str:
    return f"{i}:{CATEGORIES[i].split(',')[0][:14]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", nargs="+", default=["efficientnet_lite0", "tf_efficientnet_lite0"])
    ap.add_argument("--full", action="store_true", help="print per-image top-5 table")
    ap.add_argument("--exclude", nargs="*", default=[], help="photos to leave out of the summary")
    args = ap.parse_args()
    torch.set_num_threads(2)
    images = {k: v for k, v in load_images().items() if k not in args.exclude}
    scored = [k for k in images if ACCEPT[k]]
    summary: list[tuple[str, Cfg, int, int, float, float, float]] = []
    for arch in args.arch:
        model = build_model(arch=arch)
        if args.full:
            print(f"\n### arch={arch}  (mark: * = top-1 acceptable, + = acceptable in top-5, - = miss, . = unscored)")
            print("| image | config | top-1 p | P(acceptable) | top-5 |\n|---|---|---|---|---|")
        for cfg in CONFIGS:
            batch = torch.stack([preprocess(images[k], cfg) for k in images])
            with torch.inference_mode():
                probs = model(batch).softmax(-1)
            top1 = top5 = 0
            p1s: list[float] = []
            pacc: list[float] = []
            for row, name in zip(probs, images, strict=True):
                p, idx = row.topk(5)
                ok = ACCEPT[name]
                pa = float(row[list(ok)].sum()) if ok else float("nan")
                mark = "." if not ok else "*" if int(idx[0]) in ok else "+" if ok & set(idx.tolist()) else "-"
                if ok:
                    top1 += mark == "*"
                    top5 += mark in "*+"
                    p1s.append(float(p[0]))
                    pacc.append(pa)
                if args.full:
                    t5 = ", ".join(f"{short(int(i))} {float(q):.2f}" for q, i in zip(p, idx, strict=True))
                    pa_s = "n/a" if not ok else f"{pa:.3f}"
                    print(f"| {mark} {name} | {cfg} | {float(p[0]):.3f} | {pa_s} | {t5} |")
            nll = -sum(math.log(max(x, 1e-12)) for x in pacc) / len(pacc)
            summary.append((arch, cfg, top1, top5, sum(p1s) / len(p1s), sum(pacc) / len(pacc), nll))
    n = len(scored)
    print(f"\n### summary over {n} scored photos ({', '.join(scored)})")
    print("| arch | norm/resize/interp | top-1 | top-5 | mean top-1 p | mean P(acceptable) | mean -log P(acceptable) |")
    print("|---|---|---|---|---|---|---|")
    for arch, cfg, t1, t5, mp1, mpa, nll in summary:
        print(f"| {arch} | {cfg} | {t1}/{n} | {t5}/{n} | {mp1:.3f} | {mpa:.3f} | {nll:.3f} |")


if __name__ == "__main__":
    main()
