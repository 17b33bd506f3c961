"""The images under test: a Docker daemon, `make image` (slim), `make image-torch`, and the figures measured."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from bench.containers import (
    BUILD_TIMEOUT_S,
    image_name,
    make_image,
    remove_test_containers,
    torch_image_name,
    torch_source,
)
from bench.dockerd import docker_daemon
from bench.harness import REPO
from tests.e2e.image.figures import ARTIFACTS, FIGURES, record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container image (tests/e2e/image)")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def docker() -> Iterator[str]:
    """The docker CLI, with a daemon answering it (started here if none was, stopped after)."""
    cli = os.environ.get("CLASSIFY_DOCKER") or shutil.which("docker") or "/usr/bin/docker"
    ARTIFACTS.mkdir(exist_ok=True)
    with docker_daemon(cli, ARTIFACTS / "dockerd.log"):
        remove_test_containers(cli)  # strays of a killed run
        try:
            yield cli
        finally:
            remove_test_containers(cli)


@pytest.fixture(scope="session")
def image(docker: str) -> str:
    """The slim image `make image` builds (its layer cache reused from earlier runs)."""
    log = ARTIFACTS / "image-build.log"
    seconds = make_image(log, timeout=BUILD_TIMEOUT_S)
    record("make image", f"{seconds:.0f} s this run (layer cache as the machine had it; builder's torch from "
           f"{torch_source(log)}); log in {log.relative_to(REPO)}")
    return image_name()


@pytest.fixture(scope="session")
def torch_image(docker: str, image: str) -> str:
    """The torch target, built by `make image-torch` on the slim image's builder stage.

    The builder's torch source is the one `make image` used (where PyTorch's CPU index answers,
    the CPU build; `make image-torch` alone would take PyPI's CUDA build): one torch install per
    run, shared by both images. Which torch build it is changes nothing these tests check.
    """
    log = ARTIFACTS / "image-build-torch.log"
    tag = torch_image_name()
    seconds = make_image(log, f"TORCH_IMAGE={tag}", f"TORCH_INDEX_URL={torch_source(ARTIFACTS / 'image-build.log')}",
                         target="image-torch", timeout=BUILD_TIMEOUT_S)
    record("make image-torch", f"{seconds:.0f} s (after the slim image, whose builder stage it reuses); "
           f"log in {log.relative_to(REPO)}")
    return tag
