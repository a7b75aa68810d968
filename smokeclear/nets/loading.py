"""Build restorer networks and read and write their weights (safetensors only).

Weights files carry their own network config in the safetensors metadata, so a
file trained at another width loads without a matching YAML. Nothing here unpickles:
safetensors cannot execute code, which matters for files from elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from smokeclear.config import from_mapping, load_config, to_mapping
from smokeclear.errors import UserError
from smokeclear.registry import RestorerSpec, resolve


def default_network_config(spec: RestorerSpec) -> Any:
    return load_config(resolve(spec.network_config), spec.default_config, section="network")


def build_network(spec: RestorerSpec, network_config: Any | None = None) -> nn.Module:
    """A fresh (untrained) network for ``spec``; default config when none is given."""
    if network_config is None:
        network_config = default_network_config(spec)
    return resolve(spec.network)(network_config)


def save_weights(
    module: nn.Module,
    path: Path,
    spec: RestorerSpec,
    metadata: dict[str, Any],
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write ``module``'s state dict and metadata (JSON-encoded) to ``path``."""
    state = {
        name: (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous().cpu()
        for name, tensor in module.state_dict().items()
    }
    header = {
        "restorer": spec.name,
        "network_config": json.dumps(to_mapping(module.config)),
        "format": "smokeclear-weights-1",
    }
    header.update({key: json.dumps(value) for key, value in metadata.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".partial")
    save_file(state, str(temporary), metadata=header)
    temporary.replace(path)  # never leave a half-written weights file behind


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and raw metadata of a safetensors file, with user-facing errors."""
    if not path.is_file():
        raise UserError(
            f"weights file {path} does not exist",
            "Pass --weights with the path to a .safetensors file from `smokeclear train`.",
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own, OSError and others
        raise UserError(
            f"weights file {path} is corrupt or not a safetensors file "
            f"({type(error).__name__}: {error})",
            "Re-install smokeclear or re-export the weights with `smokeclear train`.",
        ) from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(
                f"weights file {path} holds non-finite values (NaN or inf) in {name}",
                "The weights are corrupt or training diverged: use the shipped weights "
                "(drop --weights) or an earlier checkpoint, or retrain with a lower learning rate.",
            )
    return tensors, metadata


def load_restorer(
    spec: RestorerSpec, weights: Path | None = None, overrides: dict[str, Any] | None = None
) -> nn.Module:
    """The trained network for ``spec`` in eval mode, FP32, on the CPU.

    Args:
        weights: a safetensors file; the package's shipped weights when None.
        overrides: network config values that replace the weights' own (e.g. a gate's
            thresholds, to try them without retraining); checked like a config file.
    """
    path = weights or spec.weights
    tensors, metadata = read_weights(path)
    owner = metadata.get("restorer")
    if owner != spec.name:
        raise UserError(
            f"weights file {path} holds {owner or 'unknown'!s} weights, not {spec.name}",
            f"Pass the weights trained for {spec.name}.",
        )
    try:
        config_data = json.loads(metadata["network_config"])
    except (KeyError, json.JSONDecodeError):
        raise UserError(
            f"weights file {path} has no readable network config in its metadata",
            "Use weights written by `smokeclear train`.",
        ) from None
    source = f"{path}:network_config"
    if overrides:
        config_data = {**config_data, **overrides}
        source += f" with {', '.join(sorted(overrides))} set"
    config = from_mapping(resolve(spec.network_config), config_data, source)
    module = build_network(spec, config)
    state = {
        key: tensor.float() if tensor.is_floating_point() else tensor
        for key, tensor in tensors.items()
    }
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise UserError(
            f"weights file {path} does not fit the {spec.name} network ({first_line})",
            "Use weights written by `smokeclear train` for this version of smokeclear.",
        ) from None
    return module.eval()


def deployment_module(
    spec: RestorerSpec, weights: Path | None = None, detail_gain: float | None = None
) -> nn.Module:
    """The trained network of ``spec`` as it is deployed: eval mode, batch norms folded
    into the convolutions where ``spec.fold_batchnorm``, and wrapped in the spec's detail
    stage at ``detail_gain`` when both are given.

    Shape:
        ``(B, 3, H, W)`` RGB float in [0, 1] -> the same, H and W multiples of the
        network's ``input_multiple``.
    """
    module = load_restorer(spec, weights)
    if spec.fold_batchnorm:
        module = module.fold_batchnorm()
    if detail_gain is not None and spec.detail_stage is not None:
        module = resolve(spec.detail_stage)(module, detail_gain)
    return module.eval()


def weights_metadata(path: Path) -> dict[str, Any]:
    """The decoded metadata of a weights file (config, data recipe, metrics)."""
    _, metadata = read_weights(path)
    decoded: dict[str, Any] = {}
    for key, value in metadata.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded
