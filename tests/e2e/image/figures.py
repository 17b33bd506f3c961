"""Figures the image tests measure: printed at the end of the run and kept in test-artifacts/."""

from __future__ import annotations

from bench.harness import REPO

ARTIFACTS = REPO / "test-artifacts"
FIGURES_FILE = ARTIFACTS / "image-figures.txt"

FIGURES: dict[str, str] = {}


def record(name: str, value: str) -> None:
    """Keep a measured figure; the file is rewritten so that it always holds this run's figures."""
    FIGURES[name] = value
    ARTIFACTS.mkdir(exist_ok=True)
    FIGURES_FILE.write_text("".join(f"{key}: {text}\n" for key, text in FIGURES.items()))
