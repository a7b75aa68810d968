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
class RestorerSpec:
    """What the rest of the program needs to know about one restorer.

    Input contract for every restorer: RGB float in [0, 1], NCHW, H and W padded
    by the runtime to a multiple the network reports (``input_multiple``).
    """

    name: str
    summary: str
    paper: str
    network: str  # "module:Class" of the torch nn.Module
    network_config: str  # "module:Class" of its frozen config dataclass
    default_config: Path  # YAML with `network:` and `train:` sections
    weights: Path  # shipped FP16 safetensors
    recipe: str  # module with the training data, loss and evaluation of this restorer
    # Module-name prefixes kept in FP32 in FP16 engines (normalisation, guided filters).
    fp32_modules: tuple[str, ...] = ()


REGISTRY: dict[str, RestorerSpec] = {}


def register(spec: RestorerSpec) -> None:
    if spec.name in REGISTRY:
        raise ValueError(f"restorer {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec


register(
    RestorerSpec(
        name="desmoke",
        summary="removes surgical smoke (Laplacian-pyramid U-Net)",
        paper="desmoke-laplacian-pyramid-unet",
        network="smokeclear.nets.desmoke:DesmokeNet",
        network_config="smokeclear.nets.desmoke:DesmokeConfig",
        default_config=PACKAGE_DIR / "configs" / "desmoke.yaml",
        weights=PACKAGE_DIR / "weights" / "desmoke.safetensors",
        recipe="smokeclear.train.desmoke",
        fp32_modules=("pyramid", "guided_filter"),
    )
)

register(
    RestorerSpec(
        name="dereflect",
        summary="removes specular highlights and reflections (location-aware recurrent net)",
        paper="dereflect-location-aware-sirr",
        network="smokeclear.nets.dereflect:DereflectNet",
        network_config="smokeclear.nets.dereflect:DereflectConfig",
        default_config=PACKAGE_DIR / "configs" / "dereflect.yaml",
        weights=PACKAGE_DIR / "weights" / "dereflect.safetensors",
        recipe="smokeclear.train.dereflect",
    )
)


register(
    RestorerSpec(
        name="lowlight",
        summary="brightens dark cavities without colour shift (hybrid net, spatially variant RNN)",
        paper="lowlight-hybrid-spatial-rnn",
        network="smokeclear.nets.lowlight:LowlightNet",
        network_config="smokeclear.nets.lowlight:LowlightConfig",
        default_config=PACKAGE_DIR / "configs" / "lowlight.yaml",
        weights=PACKAGE_DIR / "weights" / "lowlight.safetensors",
        recipe="smokeclear.train.lowlight",
    )
)

register(
    RestorerSpec(
        name="smooth",
        summary="flattens noise and fine clutter, keeps vessels and tissue edges; "
        "or magnifies detail (unsupervised edge-preserving smoothing)",
        paper="smooth-unsupervised-edge-preserving",
        network="smokeclear.nets.smooth:SmoothNet",
        network_config="smokeclear.nets.smooth:SmoothConfig",
        default_config=PACKAGE_DIR / "configs" / "smooth.yaml",
        weights=PACKAGE_DIR / "weights" / "smooth.safetensors",
        recipe="smokeclear.train.smooth",
    )
)

register(
    RestorerSpec(
        name="enhance",
        summary="restores colour, contrast and sharpness of a weak camera (DPED residual net)",
        paper="enhance-dped-residual",
        network="smokeclear.nets.enhance:EnhanceNet",
        network_config="smokeclear.nets.enhance:EnhanceConfig",
        default_config=PACKAGE_DIR / "configs" / "enhance.yaml",
        weights=PACKAGE_DIR / "weights" / "enhance.safetensors",
        recipe="smokeclear.train.enhance",
    )
)


def get_restorer(name: str) -> RestorerSpec:
    """Look up one restorer by name, with a user-facing error for unknown names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown restorer {name!r}",
            f"Choose one of: {', '.join(sorted(REGISTRY))}.",
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
