"""The wire contract: lint-clean, formatted, generated code in sync, no breaking changes."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
BUF = str(BIN / "buf")
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def _buf(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUF, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)


def test_buf_lint_is_clean() -> None:
    result = _buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_format_is_clean() -> None:
    result = _buf("format", "--exit-code", "--diff")
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_waivers_are_needed_and_scoped(tmp_path: Path) -> None:
    """Without the waivers the tutorial's and the inference protocol's files fail lint, and only they do."""
    for name in ("proto", "buf.gen.yaml"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    config = (REPO / "buf.yaml").read_text()
    (tmp_path / "buf.yaml").write_text(config.split("  ignore_only:")[0] + "breaking:\n  use:\n    - FILE\n")
    result = _buf("lint", "--error-format", "json", cwd=tmp_path)
    assert result.returncode != 0
    files = {line.split('"path":"')[1].split('"')[0] for line in result.stdout.splitlines() if '"path"' in line}
    assert files == {
        "proto/classify/classify.proto", "proto/inference/grpc_service.proto", "proto/inference/model_config.proto"
    }


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    """Regenerating into a scratch copy reproduces gen/ exactly."""
    for name in ("proto", "buf.yaml", "buf.gen.yaml"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    result = _buf("generate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ours, fresh = REPO / "gen", tmp_path / "gen"
    assert _tree(ours) == _tree(fresh), "gen/ has stale or missing files: run `make gen`"
    _, mismatch, errors = filecmp.cmpfiles(ours, fresh, sorted(_tree(ours)), shallow=False)
    assert not mismatch and not errors, f"gen/ differs from the proto in {mismatch}: run `make gen`"


def test_no_breaking_change_against_previous_commit() -> None:
    previous = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD~1"], cwd=REPO, capture_output=True, text=True
    )
    if previous.returncode != 0:
        pytest.skip("no previous commit in this clone")
    has_config = subprocess.run(["git", "cat-file", "-e", "HEAD~1:buf.yaml"], cwd=REPO, capture_output=True)
    if has_config.returncode != 0:
        pytest.skip("the previous commit predates buf.yaml")
    result = _buf("breaking", "--against", ".git#ref=HEAD~1")
    assert result.returncode == 0, result.stdout + result.stderr
