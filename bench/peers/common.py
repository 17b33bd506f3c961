"""What both peers share: the ResNet18 from a state dict, torchvision's preprocessing, top-K as JSON.

Runs inside a peer's own venv (torch, torchvision, Pillow): imports nothing from the service.
Written as a user of those frameworks would, following torchvision's documented ImageNet
transform for ResNet18 (resize 256, centre crop 224, ImageNet mean/std).
"""

from __future__ import annotations

import io
import os

import torch
import torchvision
from PIL import Image
from torchvision import transforms

WEIGHTS = os.environ.get("PEER_WEIGHTS", "")
THREADS = int(os.environ.get("PEER_THREADS", str(os.cpu_count() or 1)))
MAX_BATCH_SIZE = int(os.environ.get("PEER_MAX_BATCH_SIZE", "8"))
LABELS: list[str] = list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
PREPROCESS = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def load_model() -> torch.nn.Module:
    """ResNet18 from $PEER_WEIGHTS (weights_only), eval mode, $PEER_THREADS intra-op threads."""
    torch.set_num_threads(THREADS)
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def preprocess(image: Image.Image | bytes) -> torch.Tensor:
    """An encoded image (or a PIL image) as a normalised (3, 224, 224) tensor."""
    if isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    return PREPROCESS(image.convert("RGB"))


def predict(model: torch.nn.Module, batch: torch.Tensor, top_k: int = 5) -> list[list[dict[str, object]]]:
    """Softmax top-K of each row: [{label, probability, class_index}, ...] per image."""
    with torch.inference_mode():
        probabilities = torch.softmax(model(batch), dim=1)
    values, indices = probabilities.topk(top_k, dim=1)
    return [
        [{"label": LABELS[i], "probability": float(p), "class_index": int(i)} for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
    ]
