"""The README and docs/ pages: every relative link resolves, every anchor names a heading.

Links are markdown ``[text](target)`` outside fenced code blocks. A target is a path
relative to the page, optionally with ``#anchor``; ``#anchor`` alone points into the page
itself. Anchors follow GitHub's heading slugs. Web links are not fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The page's lines with fenced code blocks left out."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces -> hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list[str]:
    return [
        target
        for line in prose_lines(page.read_text(encoding="utf-8"))
        for target in LINK.findall(line)
    ]


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None


def test_github_slug_matches_githubs_rules():
    assert github_slug("The bench: `smokeclear bench`") == "the-bench-smokeclear-bench"
    assert github_slug("Losses: training needs no labels") == "losses-training-needs-no-labels"
    assert github_slug("Held-out data, and a quick check") == "held-out-data-and-a-quick-check"


def test_prose_lines_skip_code_blocks():
    text = "a [x](one.md)\n```bash\nb [y](two.md)\n```\nc"
    assert prose_lines(text) == ["a [x](one.md)", "c"]


def test_there_are_docs_pages():
    names = {page.name for page in PAGES}
    expected = {"architecture.md", "quality.md", "performance.md", "desmoke.md"}
    assert expected <= names, f"expected at least {sorted(expected)} in docs/, got {sorted(names)}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; keep it at most {README_MAX_LINES} and move depth to docs/"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in links(page):
        if is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: {destination.relative_to(ROOT)} does not exist")
            continue
        if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading with anchor #{anchor} in {destination.name}")
    assert not broken, f"broken links in {page.relative_to(ROOT)}:\n" + "\n".join(broken)
