"""Shared fixtures: deterministic weights, real photos, one real server per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from bench.harness import ServerProcess, random_resnet18_weights, real_photos, start_server

INSECT_LABELS = ("ant", "bee", "wasp")


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_resnet18_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    return real_photos()


@pytest.fixture(scope="session")
def server(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(weights, tmp_path_factory.mktemp("server"), "--max-request-bytes", str(8 << 20))
    yield running
    running.stop()


@pytest.fixture
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_address) as open_channel:
        yield open_channel


@pytest.fixture(scope="session")
def custom_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3-class 'fine-tuned' ResNet18 and its labels file."""
    directory = tmp_path_factory.mktemp("custom")
    labels = directory / "insects.txt"
    labels.write_text("\n".join(INSECT_LABELS) + "\n")
    return random_resnet18_weights(directory, seed=7, num_classes=len(INSECT_LABELS)), labels


@pytest.fixture(scope="session")
def models_server(
    weights: Path, custom_weights: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Three models at once: the bundled pretrained one (default), ResNet18, a custom one."""
    custom, labels = custom_weights
    running = start_server(
        weights, tmp_path_factory.mktemp("models_server"),
        "--model", "efficientnet_lite0", "--model", "resnet18",
        "--model", f"insects=resnet18:{custom}", "--labels", str(labels),
    )
    yield running
    running.stop()
