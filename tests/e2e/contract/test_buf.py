"""The wire contract: lint-clean, formatted, generated code in sync, no breaking changes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.harness import REPO

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


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def _clean_copy(destination: Path) -> None:
    """The files a clean clone would have (tracked, plus new ones not ignored), as they are in the working tree."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True, timeout=60,
    )
    for name in filter(None, listing.stdout.decode().split("\0")):
        src = REPO / name
        if not src.exists():  # deleted in the working tree, not yet committed
            continue
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, destination / name, follow_symlinks=False)


def test_make_gen_changes_nothing_in_a_clean_copy(tmp_path: Path) -> None:
    """`make gen` (the very target, our venv's tools) in a clean copy of the whole tree rewrites no file."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    copy = tmp_path / "tree"
    _clean_copy(copy)
    before = _snapshot(copy)
    # -o: the venv is ours (BIN), so make's install step is taken as done.
    result = subprocess.run(
        ["make", "-o", ".venv/.installed", "gen", f"BIN={BIN}"],
        cwd=copy, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    after = _snapshot(copy)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"make gen rewrites {changed}: run `make gen` and commit the result"


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
