"""Scoring restorers against baselines on held-out pairs, and the markdown tables.

Every recipe's ``eval`` reports the same thing in the same layout: per data set,
the mean and standard deviation of each metric (PSNR and SSIM, plus any the recipe
adds) of each method (the degraded input, classical baselines, the network)
against the clean image.

Then the do-no-harm rows: the network's output against its own input on frames
that have nothing to fix (clean frames for most restorers, well-exposed ones for
lowlight), in PSNR, SSIM and CIEDE2000. In surgery most frames a restorer sees are
like these, so a restorer that changes them changes the surgeon's view all the time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from smokeclear.errors import UserError
from smokeclear.nets.lowlight import REC709_LUMA
from smokeclear.nets.wrappers import run_padded
from smokeclear.train import data
from smokeclear.train.metrics import ciede2000, display_psnr, psnr, ssim
from smokeclear.train.options import EvalOptions

#: A method maps the degraded ``(H, W, 3)`` float32 RGB image in [0, 1] to its output.
Method = Callable[[np.ndarray], np.ndarray]
#: A metric scores ``(clean, output)``, both ``(H, W, 3)`` float RGB in [0, 1].
Metric = Callable[[np.ndarray, np.ndarray], float]

DEFAULT_METRICS: dict[str, Metric] = {"psnr": psnr, "ssim": ssim}
#: What the do-no-harm rows measure between a network's output and its input; PSNR
#: capped at 8-bit rounding (an unchanged frame scores 58.9 dB).
HARM_METRICS: dict[str, Metric] = {"psnr": display_psnr, "ssim": ssim, "ciede2000": ciede2000}
#: Column titles and number formats of the metrics the tables know; others use their key.
METRIC_TITLES = {"psnr": "PSNR (dB)", "ssim": "SSIM", "ciede2000": "CIEDE2000"}
METRIC_FORMATS = {"psnr": ".2f", "ssim": ".3f", "ciede2000": ".2f"}
#: ``EvalRow.reference`` of the do-no-harm rows: scored against the input itself.
INPUT_REFERENCE = "input"


@dataclass(frozen=True)
class EvalRow:
    label: str  # the data set (e.g. a smoke density)
    images: int
    scores: dict[str, dict[str, tuple[float, float]]]  # method -> metric -> (mean, std)
    reference: str = "clean"  # what the outputs were scored against: "clean" or "input"


def network_method(model: torch.nn.Module) -> Method:
    """The restorer as a method: FP32 on the CPU, any size (padded), clamped to [0, 1]."""

    def restore(degraded: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(degraded.transpose(2, 0, 1)))
            output = run_padded(model, tensor[None])[0].clamp(0, 1)
        return output.numpy().transpose(1, 2, 0)

    return restore


def score(
    label: str,
    cases: list[tuple[np.ndarray, np.ndarray]],
    methods: dict[str, Method],
    metrics: dict[str, Metric] = DEFAULT_METRICS,
) -> EvalRow:
    """Every metric of every method over ``(clean, degraded)`` cases."""
    values: dict[str, dict[str, list[float]]] = {
        name: {metric: [] for metric in metrics} for name in methods
    }
    for clean, degraded in cases:
        for name, method in methods.items():
            output = method(degraded)
            for metric, function in metrics.items():
                values[name][metric].append(function(clean, output))
    scores = {
        name: {metric: (float(np.mean(v)), float(np.std(v))) for metric, v in metrics.items()}
        for name, metrics in values.items()
    }
    return EvalRow(label, len(cases), scores)


def evaluate_sets(
    sets: list[tuple[str, list[tuple[np.ndarray, np.ndarray]]]],
    methods: dict[str, Method],
    json_path: Path | None = None,
    examples_path: Path | None = None,
    metrics: dict[str, Metric] = DEFAULT_METRICS,
) -> list[EvalRow]:
    """Score every ``(label, cases)`` set; optionally write the rows as JSON and an example grid."""
    sets = [(label, cases) for label, cases in sets if cases]
    rows = [score(label, cases, methods, metrics) for label, cases in sets]
    if json_path:
        write_rows(json_path, rows)
    if examples_path:
        write_examples(examples_path, [(label, cases[0]) for label, cases in sets], methods)
    return rows


def held_out_scene_frames(options: EvalOptions, highlights: bool = True) -> list[np.ndarray]:
    """Clean frames of ``options.split``'s scenes, spread over ~30 s of each
    (``options.frames_per_scene`` each): ``(H, W, 3)`` float32 RGB in [0, 1]."""
    return [
        data.bgr8_to_rgb(scene.render(97 * k + 13, highlights=highlights).clean)
        for scene in data.scenes_for(options.split, *data.SCENE_EVAL_SIZE)
        for k in range(options.frames_per_scene)
    ]


def held_out_cleans(options: EvalOptions, highlights: bool = True) -> list[np.ndarray]:
    """Held-out clean images: the scene frames of ``options.split`` (test or val seeds),
    spread over ~30 s of each scene (``options.frames_per_scene`` each), then that split
    of ``options.clean_dirs``.

    Returns ``(H, W, 3)`` float32 RGB images in [0, 1]. ``highlights`` False renders
    the scene without its specular highlights.
    """
    cleans = held_out_scene_frames(options, highlights)
    for folder in options.clean_dirs:
        cleans += [
            data.read_rgb(path)
            for path in data.image_files(folder)
            if data.split_of(path.name) == options.split
        ]
    return cleans


#: Rec. 709 luma weights of R, G and B.
LUMA_WEIGHTS = np.array(REC709_LUMA, np.float32)
#: The mean luma of a well-exposed frame (see :func:`well_exposed`).
WELL_EXPOSED_LUMA = (0.25, 0.75)


def mean_luma(image: np.ndarray) -> float:
    """Mean Rec. 709 luma of an ``(H, W, 3)`` RGB image in [0, 1]."""
    return float(image.mean(axis=(0, 1)) @ LUMA_WEIGHTS)


def well_exposed(image: np.ndarray) -> bool:
    """Whether an ``(H, W, 3)`` RGB image in [0, 1] is well exposed: mean luma (Rec. 709)
    in :data:`WELL_EXPOSED_LUMA`, at most 10 % of it near black (< 0.05) and 10 % blown
    (> 0.97)."""
    luma = image @ LUMA_WEIGHTS
    low, high = WELL_EXPOSED_LUMA
    return (
        low <= float(luma.mean()) <= high
        and float((luma < 0.05).mean()) <= 0.1
        and float((luma > 0.97).mean()) <= 0.1
    )


def nothing_to_fix(
    options: EvalOptions,
    trained_dirs: tuple[str, ...] = (),
    highlights: bool = True,
) -> list[tuple[str, list[np.ndarray]]]:
    """Frames with nothing to fix, by source: the held-out scene frames, then each
    ``--clean-dir`` folder.

    A folder is scored whole, except one whose name the weights record among their
    training folders (``trained_dirs``): of that only the held-out split (``options.split``).
    Returns ``(label, images)``, ``(H, W, 3)`` float32 RGB in [0, 1].
    """
    sets = [("scene frames", held_out_scene_frames(options, highlights))]
    for folder in options.clean_dirs:
        trained = folder.name in trained_dirs
        images = [
            data.read_rgb(path)
            for path in data.image_files(folder)
            if not trained or data.split_of(path.name) == options.split
        ]
        sets.append((f"{folder.name}{f' ({options.split} split)' if trained else ''}", images))
    return sets


def harm_rows(
    sets: list[tuple[str, list[np.ndarray]]],
    name: str,
    network: Method,
    metrics: dict[str, Metric] = HARM_METRICS,
) -> list[EvalRow]:
    """The do-no-harm rows: ``network``'s output against its input, per set."""
    rows = []
    for label, images in sets:
        if images:
            row = score(label, [(image, image) for image in images], {name: network}, metrics)
            rows.append(EvalRow(row.label, row.images, row.scores, INPUT_REFERENCE))
    return rows


def format_harm_table(rows: list[EvalRow], title: str) -> str:
    """The do-no-harm rows as markdown: a row per frame set, a column per metric."""
    metrics = list(next(iter(rows[0].scores.values())))
    lines = [
        title,
        "",
        "| frames | images | " + " | ".join(METRIC_TITLES.get(m, m) for m in metrics) + " |",
        "|---|---:|" + "---:|" * len(metrics),
    ]
    for row in rows:
        (scores,) = row.scores.values()
        cells = []
        for metric in metrics:
            mean, std = scores[metric]
            spec = METRIC_FORMATS.get(metric, ".4g")
            cells.append(f"{mean:{spec}} ± {std:{spec}}")
        lines.append(f"| {row.label} | {row.images} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_rows(path: Path, rows: list[EvalRow]) -> None:
    """The rows as a JSON list (label, images, scores, reference)."""
    path.write_text(json.dumps([row.__dict__ for row in rows], indent=2))


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


def format_method_table(rows: list[EvalRow]) -> str:
    """Markdown, one table per data set: a row per method, a column per metric (mean ± std)."""
    blocks = []
    for row in rows:
        methods = list(row.scores)
        metrics = list(row.scores[methods[0]])
        titles = [METRIC_TITLES.get(metric, metric) for metric in metrics]
        lines = [
            f"{row.label} ({row.images} images)",
            "",
            "| method | " + " | ".join(titles) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        for method in methods:
            cells = []
            for metric in metrics:
                mean, std = row.scores[method][metric]
                spec = METRIC_FORMATS.get(metric, ".4g")
                cells.append(f"{mean:{spec}} ± {std:{spec}}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_examples(
    path: Path,
    cases: list[tuple[str, tuple[np.ndarray, np.ndarray]]],
    methods: dict[str, Method],
    reference: str | None = "clean",
) -> None:
    """A PNG grid: per case a row of every method's output, then the clean image, labelled.

    Args:
        cases: ``(row label, (clean, degraded))``; images ``(H, W, 3)`` float32 RGB in [0, 1],
            resized to the first case's size.
        reference: the label of the last tile, the clean image; None leaves it out
            (when there is no clean image, e.g. unsupervised smoothing).
    """
    height, width = cases[0][1][0].shape[:2]
    rows = []
    for label, (clean, degraded) in cases:
        tiles = [(name, method(degraded)) for name, method in methods.items()]
        if reference is not None:
            tiles.append((reference, clean))
        strip = []
        for name, image in tiles:
            tile = cv2.resize(np.clip(image, 0, 1), (width, height), interpolation=cv2.INTER_AREA)
            tile = cv2.cvtColor((tile * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
            _label(tile, f"{name} | {label}" if not strip else name)
            strip.append(tile)
        rows.append(np.concatenate(strip, axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate(rows, axis=0)):
        raise UserError(f"cannot write {path}", "Give a writable path ending in .png.")


def _label(tile: np.ndarray, text: str) -> None:
    scale = max(0.35, tile.shape[0] / 600)
    origin = (6, int(22 * scale / 0.5))
    cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(
        tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
    )
