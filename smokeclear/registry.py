"""The restorer registry: one explicit entry per restorer.

An entry names its network class, default config, shipped weights, training
recipe and export settings by module path, so the registry imports without torch:
a deployment box running TensorRT engines never needs the networks' code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smokeclear.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PaperFigure:
    """A speed the paper of a restorer publishes, for reference at the same size."""

    restorer: str
    paper: str  # the paper's file name in shared/papers/, without .txt
    width: int
    height: int
    seconds: float  # per frame
    hardware: str
    where: str  # where in the paper, and what it says

    @property
    def fps(self) -> float:
        return 1.0 / self.seconds


@dataclass(frozen=True)
class PairLayout:
    """How a folder of real training pairs is laid out: two sub-folders of images
    with matching file names; each tuple lists the accepted folder names."""

    degraded: tuple[str, ...]
    clean: tuple[str, ...]

    def describe(self) -> str:
        """e.g. ``"blended/ + transmission/"``."""
        return f"{self.degraded[0]}/ + {self.clean[0]}/"


@dataclass(frozen=True)
class RestorerSpec:
    """What the rest of the program needs to know about one restorer.

    Input contract for every restorer: RGB float in [0, 1], NCHW, H and W padded
    by the runtime to a multiple of the network's ``input_multiple``.
    """

    name: str
    summary: str  # one line for the CLI's help
    network: str  # "module:Class" of the torch nn.Module
    network_config: str  # "module:Class" of its frozen config dataclass
    default_config: Path  # YAML with `network:` and `train:` sections
    weights: Path  # shipped FP16 safetensors
    recipe: str  # "module:Name" of its train.recipe.Recipe (data, loss, validation, eval)
    input_multiple: int  # H and W multiple the shipped network needs
    pairs: PairLayout | None = None  # real training pairs it reads (--pairs-dir); None: none
    # Module-name prefixes kept in FP32 in FP16 engines (normalisation, guided filters).
    fp32_modules: tuple[str, ...] = ()
    # "module:Class" of the stage ``--detail-gain`` wraps the network in,
    # ``Class(network, gain)``; None: the restorer has no detail mode.
    detail_stage: str | None = None
    fold_batchnorm: bool = False  # deploy with batch norms folded into the convolutions
    # torchvision VGG ("vgg16", "vgg19") whose state dict --vgg-weights takes for the
    # recipe's perceptual loss; None: the recipe has none. Must match recipe.perceptual.arch.
    perceptual_vgg: str | None = None
    paper_figures: tuple[PaperFigure, ...] = ()


REGISTRY: dict[str, RestorerSpec] = {}


def register(spec: RestorerSpec) -> None:
    if spec.name in REGISTRY:
        raise ValueError(f"restorer {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec


def unregister(name: str) -> RestorerSpec:
    """Remove one entry (tests that register a restorer of their own)."""
    return REGISTRY.pop(name)


def _package(kind: str, name: str) -> Path:
    return PACKAGE_DIR / kind / (f"{name}.yaml" if kind == "configs" else f"{name}.safetensors")


register(
    RestorerSpec(
        name="desmoke",
        summary="removes surgical smoke (Laplacian-pyramid U-Net)",
        network="smokeclear.nets.desmoke:DesmokeNet",
        network_config="smokeclear.nets.desmoke:DesmokeConfig",
        default_config=_package("configs", "desmoke"),
        weights=_package("weights", "desmoke"),
        recipe="smokeclear.train.desmoke:RECIPE",
        input_multiple=32,
        fp32_modules=("pyramid", "guided_filter"),
        paper_figures=(
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
        ),
    )
)

register(
    RestorerSpec(
        name="dereflect",
        summary="removes specular highlights and reflections (location-aware recurrent net)",
        network="smokeclear.nets.dereflect:DereflectNet",
        network_config="smokeclear.nets.dereflect:DereflectConfig",
        default_config=_package("configs", "dereflect"),
        weights=_package("weights", "dereflect"),
        recipe="smokeclear.train.dereflect:RECIPE",
        perceptual_vgg="vgg19",
        input_multiple=8,
        pairs=PairLayout(degraded=("blended", "blend", "I"), clean=("transmission", "T", "gt")),
        paper_figures=(
            PaperFigure(
                "dereflect",
                "dereflect-location-aware-sirr",
                400,
                540,
                0.068,
                "NVIDIA GeForce RTX 2080 Ti, PyTorch",
                "Sec. 5: about 0.068 s for a 400×540 image (order of the sides as printed)",
            ),
        ),
    )
)

register(
    RestorerSpec(
        name="lowlight",
        summary="brightens dark cavities without colour shift (hybrid net, spatially variant RNN)",
        network="smokeclear.nets.lowlight:LowlightNet",
        network_config="smokeclear.nets.lowlight:LowlightConfig",
        default_config=_package("configs", "lowlight"),
        weights=_package("weights", "lowlight"),
        recipe="smokeclear.train.lowlight:RECIPE",
        perceptual_vgg="vgg16",
        input_multiple=8,
        pairs=PairLayout(
            degraded=("low", "input", "dark"), clean=("high", "normal", "gt", "target")
        ),
        paper_figures=(
            PaperFigure(
                "lowlight",
                "lowlight-hybrid-spatial-rnn",
                512,
                512,
                0.32,
                "NVIDIA K80, Caffe",
                "Table V: 0.32 s at 512×512 on the GPU",
            ),
        ),
    )
)

register(
    RestorerSpec(
        name="smooth",
        summary="flattens noise and fine clutter, keeps vessels and tissue edges; "
        "or magnifies detail (unsupervised edge-preserving smoothing)",
        network="smokeclear.nets.smooth:SmoothNet",
        network_config="smokeclear.nets.smooth:SmoothConfig",
        default_config=_package("configs", "smooth"),
        weights=_package("weights", "smooth"),
        recipe="smokeclear.train.smooth:RECIPE",
        input_multiple=2,
        detail_stage="smokeclear.nets.smooth:DetailMagnify",
        fold_batchnorm=True,
        paper_figures=(
            PaperFigure(
                "smooth",
                "smooth-unsupervised-edge-preserving",
                1280,
                720,
                0.005,
                "'a modern GPU' (trained on a GeForce 1080), Torch",
                "Sec. 1 and Table 1: 5 ms for 1280×720",
            ),
        ),
    )
)

register(
    RestorerSpec(
        name="enhance",
        summary="restores colour, contrast and sharpness of a weak camera (DPED residual net)",
        network="smokeclear.nets.enhance:EnhanceNet",
        network_config="smokeclear.nets.enhance:EnhanceConfig",
        default_config=_package("configs", "enhance"),
        weights=_package("weights", "enhance"),
        recipe="smokeclear.train.enhance:RECIPE",
        perceptual_vgg="vgg19",
        input_multiple=1,
        pairs=PairLayout(
            degraded=("iphone", "blackberry", "sony", "phone", "input"),
            clean=("canon", "dslr", "target"),
        ),
    )
)


def pair_layouts_help() -> str:
    """``"blended/ + transmission/ (dereflect), ..."`` for the --pairs-dir help."""
    return ", ".join(
        f"{spec.pairs.describe()} ({spec.name})" for spec in REGISTRY.values() if spec.pairs
    )


def vgg_weights_help() -> str:
    """``"VGG-19 for dereflect and enhance, VGG-16 for lowlight"`` for the --vgg-weights help."""
    users: dict[str, list[str]] = {}
    for spec in REGISTRY.values():
        if spec.perceptual_vgg:
            users.setdefault(spec.perceptual_vgg, []).append(spec.name)
    return ", ".join(
        f"VGG-{arch.removeprefix('vgg')} for {' and '.join(names)}" for arch, names in users.items()
    )


def get_restorer(name: str) -> RestorerSpec:
    """Look up one restorer by name, with a user-facing error for unknown names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown restorer {name!r}",
            "Choose one of: "
            + "; ".join(f"{spec.name} ({spec.summary})" for spec in REGISTRY.values())
            + ".",
        ) from None


def parse_chain(text: str) -> list[RestorerSpec]:
    """``"desmoke,lowlight"`` -> the specs in order (applied left to right)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise UserError(
            f"bad restorer list {text!r}",
            "Give names separated by commas, e.g. --restorer desmoke.",
        )
    return [get_restorer(name) for name in names]


def resolve(reference: str) -> Any:
    """Import ``"package.module:Name"``."""
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
