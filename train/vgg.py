"""VGG feature extractors for perceptual losses, with weights from a local file only.

ImageNet VGG weights cannot be downloaded here (nothing downloads at run time), so
the user gives a file: a torchvision-compatible state dict (``features.N.weight``
keys, as ``torchvision.models.vgg19(weights=...).state_dict()`` writes them) in
safetensors, or a ``.pth`` read with ``torch.load(weights_only=True)`` (no
unpickling of code). Without a file the perceptual term is off: the caller logs
that loudly and records it in the checkpoint metadata.

The layer layout is torchvision's, so its indices and the usual layer names
(``relu1_2``, ``conv5_4``, ...) address the same tensors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from smokeclear.errors import UserError

log = logging.getLogger(__name__)

#: Convolutions per block (torchvision's configs D and E); blocks end in a 2x2 max pool.
VGG_BLOCKS: dict[str, tuple[int, ...]] = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
VGG_CHANNELS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_indices(arch: str) -> dict[str, int]:
    """``{"conv1_1": 0, "relu1_1": 1, ..., "pool1": 4, ...}`` for torchvision's ``features``."""
    names: dict[str, int] = {}
    index = 0
    for block, convs in enumerate(VGG_BLOCKS[arch], start=1):
        for conv in range(1, convs + 1):
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
        names[f"pool{block}"] = index
        index += 1
    return names


def build_features(arch: str) -> nn.Sequential:
    """torchvision's ``vgg16/19().features``: the same layers at the same indices."""
    layers: list[nn.Module] = []
    channels = 3
    for convs, width in zip(VGG_BLOCKS[arch], VGG_CHANNELS, strict=True):
        for _ in range(convs):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=False)]
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGGFeatures(nn.Module):
    """Frozen VGG activations at named layers.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
        layers: names from :func:`layer_indices`, e.g. ``("relu1_2", "relu5_4")``.
        weights: the state-dict file (see the module docstring).

    Shape:
        ``(B, 3, H, W)`` RGB float in [0, 1] (ImageNet-normalised inside) -> a list of
        ``(B, C_k, H / 2^j, W / 2^j)`` activations, one per layer in ``layers`` order.
    """

    def __init__(self, arch: str, layers: tuple[str, ...], weights: Path) -> None:
        super().__init__()
        if arch not in VGG_BLOCKS:
            raise ValueError(f"unknown VGG {arch!r}; known: {', '.join(VGG_BLOCKS)}")
        if not layers:
            raise ValueError("name at least one layer")
        indices = layer_indices(arch)
        unknown = [name for name in layers if name not in indices]
        if unknown:
            raise ValueError(f"{arch} has no layers {unknown}; known: {', '.join(indices)}")
        self.picks = tuple(indices[name] for name in layers)
        self.features = build_features(arch)[: max(self.picks) + 1]
        self._load(weights, arch)
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _load(self, path: Path, arch: str) -> None:
        state = read_state_dict(path)
        wanted = {f"features.{key}": value for key, value in self.features.state_dict().items()}
        missing = [key for key in wanted if key not in state]
        if missing:
            raise UserError(
                f"{path} is not a torchvision {arch} state dict (missing {missing[0]})",
                f"Save torchvision.models.{arch}(weights='IMAGENET1K_V1').state_dict() to a file "
                "and pass that.",
            )
        try:
            self.features.load_state_dict(
                {key.removeprefix("features."): state[key] for key in wanted}
            )
        except RuntimeError as error:
            raise UserError(
                f"{path} does not fit {arch} ({str(error).splitlines()[0]})",
                f"Pass the state dict of torchvision's {arch}.",
            ) from None

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # always frozen, whatever the caller's mode

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image - self.mean) / self.std
        activations: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.picks:
                activations[index] = x
        return [activations[pick] for pick in self.picks]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or ``.pth`` state-dict file, never unpickling code."""
    if not path.is_file():
        raise UserError(
            f"VGG weights file {path} does not exist",
            "Pass the path of a torchvision VGG state dict (.safetensors or .pth).",
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(
            f"VGG weights file {path} is unreadable ({type(error).__name__}: {error})",
            "Pass a torchvision VGG state dict saved with torch.save or safetensors.",
        ) from None
    if not isinstance(state, dict):
        raise UserError(
            f"VGG weights file {path} holds a {type(state).__name__}, not a state dict",
            "Save model.state_dict(), not the model.",
        )
    return state


def optional_features(
    arch: str, layers: tuple[str, ...], path: Path | None, term: str
) -> VGGFeatures | None:
    """VGG features for a perceptual term, or None with a loud warning when no file is given.

    Args:
        term: how the recipe names the term in the warning, e.g. "the paper's VGG-19
            term (lambda 0.2)".
    """
    if path is None:
        log.warning(
            "PERCEPTUAL LOSS OFF: no --vgg-weights given, so %s is not trained; the "
            "weights record this. Pass a torchvision %s state dict to turn it on.",
            term,
            arch,
        )
        return None
    return VGGFeatures(arch, layers, path)
