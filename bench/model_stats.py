"""Parameters and FLOPs per frame of a restorer network, counted without running it.

``smokeclear bench model-stats --restorer dereflect --size 1920x1080`` counts
the shipped network; ``--config FILE`` counts an untrained network of that YAML's
``network:`` section instead (e.g. the paper-width presets). FLOPs are 2 per
multiply-add of convolutions and matmuls (``torch.utils.flop_counter``), at the size
padded to the network's multiple, on meta tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smokeclear.engines.base import padded_size


def model_stats(
    restorer: str, width: int, height: int, config: Path | None = None
) -> dict[str, Any]:
    """``{"restorer", "config", "parameters", "size", "gflops"}`` of one network."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from smokeclear.config import load_config
    from smokeclear.nets.loading import build_network, load_restorer
    from smokeclear.registry import get_restorer, resolve

    spec = get_restorer(restorer)
    if config is None:
        module = load_restorer(spec)
    else:
        module = build_network(spec, load_config(resolve(spec.network_config), config, "network"))
    parameters = sum(p.numel() for p in module.parameters())
    multiple = module.input_multiple
    padded = padded_size(height, width, multiple)
    module = module.to("meta").eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, 3, *padded, device="meta"))
    return {
        "restorer": restorer,
        "config": str(config) if config else "shipped weights",
        "parameters": parameters,
        "size": f"{width}x{height}",
        "gflops": counter.get_total_flops() / 1e9,
    }


def print_model_stats(
    restorer: str, sizes: list[tuple[int, int]], config: Path | None, json_path: Path | None
) -> int:
    """``smokeclear bench model-stats``: one line per size; the rows as JSON."""
    rows = []
    for width, height in sizes:
        row = model_stats(restorer, width, height, config)
        rows.append(row)
        print(
            f"{row['restorer']} ({row['config']}): {row['parameters'] / 1e6:.3f} M parameters, "
            f"{row['gflops']:.1f} GFLOP per {row['size']} frame"
        )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=2))
    return 0
