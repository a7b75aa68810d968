"""Scoring restorers against baselines on held-out pairs, and the markdown table.

Every recipe's ``eval`` reports the same thing in the same layout: per data set
(a row), the mean and standard deviation of PSNR and SSIM of each method (the
degraded input, classical baselines, the network) against the clean image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from smokeclear.nets.wrappers import run_padded
from smokeclear.train.metrics import psnr, ssim

#: A method maps the degraded ``(H, W, 3)`` float32 RGB image in [0, 1] to its output.
Method = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvalRow:
    label: str  # the data set (e.g. a smoke density)
    images: int
    scores: dict[str, dict[str, tuple[float, float]]]  # method -> metric -> (mean, std)


def network_method(model: torch.nn.Module) -> Method:
    """The restorer as a method: FP32 on the CPU, any size (padded), clamped to [0, 1]."""

    def restore(degraded: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(degraded.transpose(2, 0, 1)))
            output = run_padded(model, tensor[None])[0].clamp(0, 1)
        return output.numpy().transpose(1, 2, 0)

    return restore


def score(
    label: str, cases: list[tuple[np.ndarray, np.ndarray]], methods: dict[str, Method]
) -> EvalRow:
    """PSNR and SSIM of every method over ``(clean, degraded)`` cases."""
    values: dict[str, dict[str, list[float]]] = {name: {"psnr": [], "ssim": []} for name in methods}
    for clean, degraded in cases:
        for name, method in methods.items():
            output = method(degraded)
            values[name]["psnr"].append(psnr(clean, output))
            values[name]["ssim"].append(ssim(clean, output))
    scores = {
        name: {metric: (float(np.mean(v)), float(np.std(v))) for metric, v in metrics.items()}
        for name, metrics in values.items()
    }
    return EvalRow(label, len(cases), scores)


def format_table(rows: list[EvalRow], first_column: str) -> str:
    """A markdown table: one row per data set, PSNR then SSIM columns per method."""
    methods = list(rows[0].scores)
    lines = [
        f"| {first_column} | images | "
        + " | ".join(f"{m} PSNR (dB)" for m in methods)
        + " | "
        + " | ".join(f"{m} SSIM" for m in methods)
        + " |",
        "|---|---:|" + "---:|" * (2 * len(methods)),
    ]
    for row in rows:
        psnrs = [
            f"{row.scores[m]['psnr'][0]:.2f} ± {row.scores[m]['psnr'][1]:.2f}" for m in methods
        ]
        ssims = [
            f"{row.scores[m]['ssim'][0]:.3f} ± {row.scores[m]['ssim'][1]:.3f}" for m in methods
        ]
        lines.append(f"| {row.label} | {row.images} | " + " | ".join(psnrs + ssims) + " |")
    return "\n".join(lines)
