"""Network architectures the service can serve: how each is fed and what its classes are called.

Torch-free: building a network from weights (service/core/torch_networks.py)
needs the ``[torch]`` extra; serving an exported graph needs only this.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from service.core import efficientnet_lite0
from service.core.preprocessing import Preprocessing
from service.errors import StartupError


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in torchvision's order (tests/core check them against torchvision's)."""
    text = resources.files(__package__).joinpath("imagenet_labels.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


@dataclass(frozen=True)
class Architecture:
    """A network family: its name and the preprocessing its weights were trained with."""

    name: str
    preprocessing: Preprocessing


# torchvision's ResNet18_Weights.IMAGENET1K_V1.transforms(): resize 256 (bilinear, antialiased),
# centre crop 224, ImageNet mean and std (tests/e2e/models/test_preprocessing.py compares).
RESNET18 = Architecture(
    name="resnet18",
    preprocessing=Preprocessing(
        resize_size=256, crop_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation="bilinear"
    ),
)

EFFICIENTNET_LITE0 = Architecture(
    name="efficientnet_lite0",
    # Measured, not assumed (docs/efficientnet_lite0.md): these weights were
    # trained on inputs scaled to [-1, 1] (mean = std = 0.5); the ImageNet
    # mean/std that timm lists for its own efficientnet_lite0 is wrong for them.
    preprocessing=Preprocessing(
        resize_size=efficientnet_lite0.INPUT_SIZE,
        crop_size=efficientnet_lite0.INPUT_SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
    ),
)

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (RESNET18, EFFICIENTNET_LITE0)}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise StartupError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
