"""The papers' own speed figures, read from the registry.

Each registry entry lists the figures its paper publishes (``spec.paper_figures``);
the bench times our engines at the same sizes and sets the two side by side.
"""

from __future__ import annotations

from collections.abc import Iterator

from smokeclear.registry import REGISTRY, PaperFigure


def paper_figures() -> Iterator[PaperFigure]:
    """Every registered restorer's paper figures, in registry order."""
    for spec in REGISTRY.values():
        yield from spec.paper_figures
