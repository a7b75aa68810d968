"""The pass-through gates' shared pieces: a band ``(low, high)`` and its ramp.

Every restorer's output-side safeguard (desmoke's density, dereflect's confidence and
whiteness, lowlight's exposure) opens by the same ramp: 0 at or below ``low``, 1 from
``high``, linear between; equal values mean the gate is off.
"""

from __future__ import annotations

import torch


def check_band(name: str, band: tuple[float, float]) -> None:
    """Raise ValueError unless the config field ``name``'s ``(low, high)`` is ordered."""
    low, high = band
    if low > high:
        raise ValueError(f"{name} ({low}, {high}) must go from low to high")


def ramp(value: torch.Tensor, band: tuple[float, float]) -> torch.Tensor:
    """``value`` mapped to [0, 1]: 0 at or below ``band[0]``, 1 from ``band[1]`` (low < high)."""
    low, high = band
    return ((value - low) / (high - low)).clamp(0.0, 1.0)
