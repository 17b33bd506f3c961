"""Every tool answers --help and does nothing else: no venv built, no file written, no benchmark started."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bench.harness import REPO

pytestmark = pytest.mark.timeout(600)  # every tool's --help runs in one module fixture
PYTHONPATH = os.pathsep.join(str(REPO / p) for p in ("", "gen", "clients/python/src"))
CLASSIFY = [
    [], ["serve"], ["gateway"], ["predict"], ["bench"], ["quantize"], ["weights"], ["weights", "fetch"],
    ["weights", "list"], ["weights", "verify"], ["weights", "add"], ["models"], ["models", "list"],
    ["models", "load"], ["models", "unload"],
]
# Every bench module with a command line (bench/peers/ run inside the peers' own venvs).
BENCH = sorted(
    f"bench.{p.stem}" for p in (REPO / "bench").glob("*.py") if 'if __name__ == "__main__"' in p.read_text()
)
TOOLS = [["-m", "service.cli", *words] for words in CLASSIFY] + [["-m", "classify_client.cli"], ["-m", "classify_client.cli", "predict"]]
TOOLS += [["-m", module] for module in BENCH] + [["-m", "service.tools.settings_table"]]


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if ".git" not in p.parts and "__pycache__" not in p.parts}


def _help(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    try:
        return subprocess.run([sys.executable, *argv, "--help"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:  # it went on to do something
        return subprocess.CompletedProcess(argv, -9, "", "still running after 60 s")


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, subprocess.CompletedProcess[str]], dict[str, Path], bool]:
    """Every tool's --help, four at a time, each in an empty directory; and whether the checkout stayed as it was."""
    scratch = tmp_path_factory.mktemp("help")
    before = _tree(REPO / "bench"), _tree(REPO / "weights")
    cwds = {" ".join(argv): scratch / str(i) for i, argv in enumerate(TOOLS)}
    with ThreadPoolExecutor(4) as pool:
        futures = {" ".join(argv): pool.submit(_help, argv, cwds[" ".join(argv)]) for argv in TOOLS}
        results = {name: future.result() for name, future in futures.items()}
    return results, cwds, (_tree(REPO / "bench"), _tree(REPO / "weights")) == before


def test_every_bench_module_is_listed() -> None:
    assert {"bench.openvino_check", "bench.jpeg_draft_agreement", "bench.perf_analyzer", "bench.run"} <= set(BENCH)


def test_help_leaves_the_checkout_as_it_was(answers: tuple[dict[str, Any], dict[str, Path], bool]) -> None:
    """No venv under bench/.venvs, no result or weights file appeared."""
    assert answers[2]


@pytest.mark.parametrize("argv", TOOLS, ids=lambda argv: " ".join(argv[1:]))
def test_help_prints_usage_and_nothing_else(argv: list[str], answers: tuple[dict[str, Any], dict[str, Path], bool]) -> None:
    """`--help` prints usage, exits 0 within seconds, and writes nothing where it runs."""
    results, cwds, _ = answers
    result = results[" ".join(argv)]
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout, result.stdout
    assert list(cwds[" ".join(argv)].iterdir()) == []
