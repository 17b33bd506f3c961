"""README is the front door: every page under docs/ is reachable from it, and every relative link resolves."""

from __future__ import annotations

import re
from pathlib import Path

from bench.harness import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _links(page: Path) -> list[tuple[str, Path]]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links inside code blocks are examples
    out = []
    for target in LINK.findall(text):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        out.append((target, (page.parent / target.split("#", 1)[0]).resolve()))
    return out


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_relative_link_resolves() -> None:
    """A moved section keeps working links (to code, results and other pages)."""
    broken = [
        f"{page.relative_to(REPO)}: {target}"
        for page in _pages()
        for target, path in _links(page)
        if not path.exists()
    ]
    assert not broken, broken


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    """Following links from README.md reaches every page under docs/."""
    seen: set[Path] = set()
    todo = [REPO / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or not page.exists() or page.suffix != ".md":
            continue
        seen.add(page)
        todo += [path for _, path in _links(page)]
    missing = [p.relative_to(REPO) for p in (REPO / "docs").glob("*.md") if p not in seen]
    assert not missing, missing


def test_the_readme_is_a_front_door() -> None:
    """The README stays short: what it is, the two commands, first calls, where to go next."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    for heading in ("## Two commands", "## First calls", "## Where to go next"):
        assert heading in readme
    assert "make serve" in readme and "make test" in readme
