"""Triton's own tools, installed by `make oip-tools` into .venv-oip, and a way to run them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.harness import REPO, skimage_photo, sklearn_photo

OIP_VENV = REPO / ".venv-oip"
TRITON_PYTHON = OIP_VENV / "bin" / "python"
PERF_ANALYZER = OIP_VENV / "perf_analyzer" / "bin" / "perf_analyzer"
CUDA_RUNTIME = OIP_VENV / "perf_analyzer" / "nvidia" / "cuda_runtime" / "lib"
DRIVER = Path(__file__).with_name("triton_driver.py")
PHOTOS = ("chelsea.png", "coffee.png", "china.jpg", "rocket.jpg")


@pytest.fixture(scope="session")
def triton_python() -> Path:
    if not TRITON_PYTHON.exists():
        pytest.fail("tritonclient's venv is missing: run `make oip-tools` (make test does)")
    return TRITON_PYTHON


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four real photos (PNG and JPEG) as files the driver can read."""
    directory = tmp_path_factory.mktemp("oip-photos")
    paths = []
    for name in PHOTOS:
        data = sklearn_photo(name) if name == "china.jpg" else skimage_photo(name)
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def run_driver(
    python: Path, protocol: str, url: str, photos: list[Path], *extra: str, model: str = "resnet18"
) -> dict[str, Any]:
    """Run tritonclient against ``url``; returns what it saw."""
    result = subprocess.run(
        [str(python), str(DRIVER), protocol, url, model, *map(str, photos), *extra],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
