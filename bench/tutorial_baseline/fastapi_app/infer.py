# ruff: noqa  (the tutorial's code as written: its style is part of the copy, not ours to fix)
# Measurement baseline, copied from the tutorial's fastapi_app/infer.py. NOT part of the
# service; never deploy it (see ../README.md). The one change: the weights path comes from
# TUTORIAL_WEIGHTS instead of the tutorial's hard-coded "/path/to/resnet18-f37072fd.pth".
import os

import torch
from torchvision import models
from PIL import Image
from typing import List, Tuple

_MODEL = None
_TRANSFORM = None


def _load_model():
    global _MODEL, _TRANSFORM
    if _MODEL is None:
        weights_path = os.environ["TUTORIAL_WEIGHTS"]
        _MODEL = models.resnet18()
        state_dict = torch.load(weights_path, map_location=torch.device("cpu"))
        _MODEL.load_state_dict(state_dict, strict=False)
        _MODEL.eval()
        default_weights = models.ResNet18_Weights.DEFAULT
        _TRANSFORM = default_weights.transforms()
    return _MODEL, _TRANSFORM


def preprocess(img: Image.Image) -> torch.Tensor:
    _, transform = _load_model()
    return transform(img).unsqueeze(0)


@torch.inference_mode()
def predict(img: Image.Image, topk: int = 5) -> List[Tuple[str, float]]:
    model, _ = _load_model()
    x = preprocess(img)
    logits = model(x)
    probs = torch.softmax(logits, dim=1)[0]
    topk_probs, topk_idxs = torch.topk(probs, k=topk)
    classes = models.ResNet18_Weights.DEFAULT.meta["categories"]
    return [(classes[i], float(topk_probs[j])) for j, i in enumerate(topk_idxs)]
