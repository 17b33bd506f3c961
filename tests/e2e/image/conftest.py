"""The image under test: a Docker daemon, `make image`, and the figures the tests measure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from bench.harness import REPO
from tests.e2e.image.containers import BUILD_TIMEOUT_S, image_name, make_image, remove_test_containers
from tests.e2e.image.dockerd import docker_daemon
from tests.e2e.image.figures import ARTIFACTS, FIGURES, record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container image (tests/image)")
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
    """The image `make image` builds (its layer cache reused from earlier runs)."""
    seconds = make_image(ARTIFACTS / "image-build.log", timeout=BUILD_TIMEOUT_S)
    record("make image", f"{seconds:.0f} s this run (layer cache as the machine had it); "
           f"log in {(ARTIFACTS / 'image-build.log').relative_to(REPO)}")
    return image_name()
