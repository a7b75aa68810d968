"""The papers' own speed figures, read from the registry.

Each registry entry lists the figures its paper publishes (``spec.paper_figures``);
the bench times our engines at the same sizes and sets the two side by side.

Until the registry carries them (issue 17, item 1), the figures are kept here and
:func:`figures_of` reads them by restorer name: at the merge this table and the
fallback go, and ``PaperFigure`` is imported from :mod:`smokeclear.registry`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from smokeclear.registry import REGISTRY, RestorerSpec


@dataclass(frozen=True)
class PaperFigure:
    """A speed the paper of a restorer publishes, for reference at the same size."""

    restorer: str
    paper: str  # as the registry's ``paper`` field names it
    width: int
    height: int
    seconds: float  # per frame
    hardware: str
    where: str  # where in the paper, and what it says

    @property
    def fps(self) -> float:
        return 1.0 / self.seconds


_FIGURES_UNTIL_THE_REGISTRY_HAS_THEM = (
    PaperFigure(
        "desmoke",
        "desmoke-laplacian-pyramid-unet",
        512,
        512,
        0.038,
        "the authors' training machine (NVIDIA Titan X 12 GB), TensorFlow/Keras",
        "abstract and Sec. 4.3.3: 26 fps, 0.038 s per frame",
    ),
    PaperFigure(
        "desmoke",
        "desmoke-laplacian-pyramid-unet",
        512,
        512,
        0.0689,
        "NVIDIA GeForce GTX 980, Windows, Python",
        "Table 2: 0.0689 s per image, mean over 300 real smoke images",
    ),
    PaperFigure(
        "dereflect",
        "dereflect-location-aware-sirr",
        400,
        540,
        0.068,
        "NVIDIA GeForce RTX 2080 Ti, PyTorch",
        "Sec. 5: about 0.068 s for a 400×540 image (order of the sides as printed)",
    ),
    PaperFigure(
        "smooth",
        "smooth-unsupervised-edge-preserving",
        1280,
        720,
        0.005,
        "'a modern GPU' (trained on a GeForce 1080), Torch",
        "Sec. 1 and Table 1: 5 ms for 1280×720",
    ),
    PaperFigure(
        "lowlight",
        "lowlight-hybrid-spatial-rnn",
        512,
        512,
        0.32,
        "NVIDIA K80, Caffe",
        "Table V: 0.32 s at 512×512 on the GPU",
    ),
)


def figures_of(spec: RestorerSpec) -> tuple[PaperFigure, ...]:
    """The speed figures ``spec``'s paper publishes (none for some papers)."""
    if hasattr(spec, "paper_figures"):  # the registry's own, once it has them
        return tuple(spec.paper_figures)
    return tuple(f for f in _FIGURES_UNTIL_THE_REGISTRY_HAS_THEM if f.restorer == spec.name)


def paper_figures() -> Iterator[PaperFigure]:
    """Every registered restorer's paper figures, in registry order."""
    for spec in REGISTRY.values():
        yield from figures_of(spec)
