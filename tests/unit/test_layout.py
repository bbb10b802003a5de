"""The README's Layout shows every package of src/market, indented under its parent, as a newcomer reads it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "src" / "market"


def _layout_tree() -> set[tuple[str, ...]]:
    """The folders the Layout block draws under src/market/, as paths (indentation gives the nesting)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    drawn: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str]] = []
    inside = False
    for line in block.splitlines():
        if line.startswith("src/market/"):
            inside = True
            continue
        if inside and line and not line.startswith(" "):
            break  # the next top-level entry (tests/, docs/, ...)
        match = re.match(r"^( +)([a-z_]+)/(?=\s)", line)
        if not inside or match is None:
            continue
        indent, name = len(match[1]), match[2]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, name))
        drawn.add(tuple(part for _, part in stack))
    return drawn


def test_the_readme_layout_draws_every_package_under_its_parent():
    packages = {
        init.parent.relative_to(PACKAGE).parts
        for init in PACKAGE.rglob("__init__.py")
        if init.parent != PACKAGE
    }
    missing = sorted("/".join(parts) for parts in packages - _layout_tree())
    assert not missing, f"README's Layout does not show these packages: {missing}"
