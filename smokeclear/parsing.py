"""Command-line values shared by ``smokeclear`` and the bench: sizes, work scales,
weights and comma lists. Torch-free, so any command can parse its options cheaply."""

from __future__ import annotations

import os
from pathlib import Path

from smokeclear.errors import UserError

WORK_SCALES = {"1": 1.0, "1.0": 1.0, "0.5": 0.5, "0.25": 0.25}


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise UserError(f"bad --size {text!r}", "Use WIDTHxHEIGHT, e.g. --size 1280x720.")
    size = int(width), int(height)
    if min(size) < 16 or max(size) > 8192:
        raise UserError(f"--size {text} is out of range", "Use a size between 16x16 and 8192x8192.")
    return size


def output_file(text: str) -> Path:
    """An output file path whose folder exists (checked before any work, not after it)."""
    path = Path(text)
    if not path.parent.is_dir():
        raise UserError(
            f"cannot write {text}: folder {path.parent} does not exist",
            "Create the folder first, or choose a path in an existing one.",
        )
    return path


def refuse_overwriting(output: Path, source: Path, flag: str) -> None:
    """UserError when writing ``output`` would overwrite ``source`` (links followed).

    ``flag`` names the output option in the message (``--record``, ``restore OUTPUT``).
    """
    if not (output.exists() and source.exists()):
        same = output.resolve() == source.resolve()
    else:
        same = os.path.samefile(output, source)
    if same:
        raise UserError(
            f"{flag} {output} is the input {source}: it would be destroyed",
            "Write the result to another file or folder.",
        )


def parse_work_scale(text: str) -> float:
    """``"0.5"`` -> ``0.5``: the network runs at that scale of the frame."""
    if text not in WORK_SCALES:
        raise UserError(f"bad --work-scale {text!r}", "Use 1, 0.5 or 0.25.")
    return WORK_SCALES[text]


def parse_weights(entries: list[str], restorers: list[str]) -> dict[str, Path]:
    """``--weights PATH`` (one restorer) or ``--weights NAME=PATH`` (chains)."""
    weights: dict[str, Path] = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            if len(restorers) != 1:
                raise UserError(
                    f"--weights {entry} is ambiguous for a chain",
                    "Use --weights NAME=PATH for each restorer.",
                )
            name, path = restorers[0], entry
        if name not in restorers:
            raise UserError(
                f"--weights given for {name}, which is not in --restorer",
                f"Use one of: {', '.join(restorers)}.",
            )
        weights[name] = Path(path)
    return weights


def comma_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise UserError(f"empty list {text!r}", "Give comma-separated values.")
    return items
