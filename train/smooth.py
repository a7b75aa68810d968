"""smooth recipe: unlabelled frames, the paper's energy as the loss, and its evaluation.

Training needs no labels (paper Sec. 3.3 and 4): the network minimises the energy
of :mod:`smokeclear.train.smooth_energy` of its own output over many images.
The images are clean frames (synthetic scene frames of the training seeds and the
training split of any clean-photo folders given by path), randomly cropped,
flipped and turned; ``noise_fraction`` of the patches get Gaussian sensor noise
(ours: scope frames are noisy, and noise is what the smoother should flatten).
Each patch's important edge map ``B`` is computed from the patch itself.

Validation and early stopping use the mean energy of the network's outputs on
fixed held-out patches (lower is better; logged as ``-energy``).

Evaluation on held-out frames (and the test split of any clean-photo folders):

- the energy of the network's outputs against direct minimisation of the same
  energy on each image by Adam (the paper's Figs. 5-7 comparison), on a few
  small frames since Adam needs hundreds of energy evaluations per image;
- on every frame, against a bilateral filter with the energy's own sigmas
  (``sigma_r`` 0.1, ``sigma_s`` 7): the edge gradient kept on the important
  edges ``B`` (mean gradient magnitude of the output over that of the input, and
  their correlation), and the gradient left in flat regions (pixels at least
  three pixels from ``B``), lower being flatter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from smokeclear.config import bounded
from smokeclear.train import data, evaluation
from smokeclear.train.data import SCENE_EVAL_SIZE
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.loop import StatelessObjective, Validation
from smokeclear.train.recipe import (
    TINY_TRAIN,
    EvalRun,
    FrameSets,
    Recipe,
    TrainingSampler,
    clean_frames,
)
from smokeclear.train.smooth_energy import (
    EnergyConfig,
    edge_map_of,
    energy,
    minimise_directly,
)

log = logging.getLogger(__name__)

#: Evaluation frames are the held-out scene frames at half size (the energy and
#: the edge detector cost O(21^2 H W)).
EVAL_SCALE = 0.5
#: Frames (the first ones) on which Adam minimises the energy directly, and their size.
ADAM_IMAGES = 6
ADAM_SIZE = (160, 96)
ADAM_ITERATIONS = 300
ADAM_LEARNING_RATE = 5e-3  # on [0, 1] images: about 1.3 8-bit levels per step
#: Detail magnification shown in the example grid.
EXAMPLE_DETAIL_GAIN = 3.0
#: Flat regions: pixels at least this far from an important edge point.
FLAT_MARGIN = 3


@dataclass(frozen=True)
class SmoothTrainConfig:
    patch_size: int = bounded(224, 8, 4096)  # paper: 224 crops of PASCAL VOC
    batch_size: int = bounded(1, 1, 4096)  # paper: 1
    learning_rate: float = bounded(0.01, 0, 1, low_open=True)  # paper: Adam, 0.01
    betas: tuple[float, float] = bounded((0.9, 0.999), 0, 1)
    weight_decay: float = bounded(5e-4, 0, 1e6)  # public code
    steps_per_epoch: int = bounded(200, 1, 10_000_000)
    max_epochs: int = bounded(30, 1, 1_000_000)  # paper: 30 epochs of ~17k images
    patience: int = bounded(6, 0, 1_000_000)
    min_delta: float = bounded(0.05, 0, 1e6)  # energy units
    plateau_patience: int = bounded(0, 0, 1_000_000)
    noise_fraction: float = bounded(0.3, 0, 1)  # patches with sensor noise (ours)
    noise_max: float = bounded(0.02, 0, 1)  # its standard deviation ~ U(0, noise_max)
    scene_fraction: float = bounded(
        0.5, 0, 1
    )  # share of patches from the synthetic scene (rest: photos)
    validation_size: int = bounded(8, 1, 100_000)
    seed: int = 0
    energy: EnergyConfig = field(default_factory=EnergyConfig)

    def __post_init__(self) -> None:
        if self.patch_size < 32 or self.patch_size % 2:
            raise ValueError(f"patch_size must be even and >= 32, got {self.patch_size}")
        if not 0 <= self.noise_fraction <= 1:
            raise ValueError(f"noise_fraction must be in [0, 1], got {self.noise_fraction}")


# --------------------------------------------------------------------------- data


@dataclass
class FrameSampler(TrainingSampler[SmoothTrainConfig]):
    """Draws ``(image, edge_map)`` training batches; deterministic for a given generator."""

    def patch(self) -> np.ndarray:
        rng, config = self.rng, self.config
        patch = self.clean_patch()
        patch = np.rot90(patch, int(rng.integers(0, 4)))
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < config.noise_fraction:
            sigma = float(rng.uniform(0.0, config.noise_max))
            patch = np.clip(patch + rng.normal(0.0, sigma, patch.shape), 0.0, 1.0)
        return np.ascontiguousarray(patch, dtype=np.float32)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, edge_map)``: ``(size, 3, P, P)`` RGB [0, 1] and ``(size, 1, P, P)`` bool."""
        images = data.to_batch([self.patch() for _ in range(size)])
        return images, edge_map_of(images)


# --------------------------------------------------------------------------- loss


class EnergyObjective(StatelessObjective):
    """The paper's energy of the network's output, as the training loss."""

    def __init__(self, config: EnergyConfig) -> None:
        self.config = config
        self.last_terms: dict[str, float] = {}

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, edge_maps = batch
        terms = energy(model(images), images, edge_maps, self.config)
        self.last_terms = {
            name: float(getattr(terms, name).detach())
            for name in ("data", "flatten", "edge", "large_fraction")
        }
        return terms.total


def energy_validation(batch: tuple[torch.Tensor, torch.Tensor], config: EnergyConfig) -> Validation:
    """Early stopping on ``-energy`` of the model's outputs for fixed patches."""

    @torch.no_grad()
    def score(model: nn.Module) -> float:
        model.eval()
        images, edge_maps = batch
        totals = [
            float(
                energy(
                    model(images[i : i + 1]), images[i : i + 1], edge_maps[i : i + 1], config
                ).total
            )
            for i in range(len(images))
        ]
        return -float(np.mean(totals))

    return Validation("val_neg_energy", "-energy", "", score)


def _data_recipe(config: SmoothTrainConfig) -> dict[str, Any]:
    return {
        "images": "clean frames, no labels (unsupervised: the loss is the energy)",
        "noise": f"{config.noise_fraction:.0%} of patches with Gaussian noise sigma "
        f"U(0, {config.noise_max}) (ours)",
        "augmentation": "random crops, flips, 90-degree rotations",
        "edge_map": "public code's heuristic detector on each patch",
    }


# --------------------------------------------------------------------------- evaluation


def bilateral(image: np.ndarray, config: EnergyConfig | None = None) -> np.ndarray:
    """Baseline: OpenCV's bilateral filter with the energy's sigmas (window ``h``)."""
    config = config or EnergyConfig()
    return cv2.bilateralFilter(
        np.ascontiguousarray(image, dtype=np.float32),
        config.window,
        config.sigma_color,
        config.sigma_space,
    )


def adam_minimiser(
    config: EnergyConfig,
    iterations: int = ADAM_ITERATIONS,
    learning_rate: float = ADAM_LEARNING_RATE,
) -> evaluation.Method:
    """Baseline: the energy minimised directly on each image by Adam, from the image itself."""

    def minimise(image: np.ndarray) -> np.ndarray:
        output = minimise_directly(_tensor(image), config, iterations, learning_rate)
        return _array(output.clamp(0.0, 1.0))

    return minimise


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].numpy().transpose(1, 2, 0)


def _luma_gradient(image: np.ndarray) -> np.ndarray:
    luma = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


class SmoothingMetrics:
    """Metrics of an output against its input; the input's edge map is computed once per image.

    Each metric has the evaluation's ``(reference, output)`` signature, the
    reference being the input image itself.
    """

    def __init__(self, config: EnergyConfig) -> None:
        self.config = config
        self._image: np.ndarray | None = None  # held, so its identity cannot be reused
        self._cached: tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _prepare(
        self, image: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        if image is not self._image or self._cached is None:
            edge_map = edge_map_of(_tensor(image))
            edges = edge_map[0, 0].numpy()
            near = cv2.dilate(edges.astype(np.uint8), np.ones((2 * FLAT_MARGIN + 1,) * 2, np.uint8))
            self._cached = (edge_map, edges, near == 0, _luma_gradient(image))
            self._image = image
        return self._cached

    def energy(self, image: np.ndarray, output: np.ndarray) -> float:
        edge_map = self._prepare(image)[0]
        with torch.no_grad():
            return float(energy(_tensor(output), _tensor(image), edge_map, self.config).total)

    def edge_kept(self, image: np.ndarray, output: np.ndarray) -> float:
        """Mean gradient magnitude on ``B``, output over input (1 = edges kept)."""
        _, edges, _, gradient = self._prepare(image)
        if not edges.any():
            return float("nan")
        return float(_luma_gradient(output)[edges].mean() / max(gradient[edges].mean(), 1e-8))

    def edge_correlation(self, image: np.ndarray, output: np.ndarray) -> float:
        """Pearson correlation of input and output gradient magnitudes on ``B``."""
        _, edges, _, gradient = self._prepare(image)
        if edges.sum() < 2:
            return float("nan")
        return float(np.corrcoef(gradient[edges], _luma_gradient(output)[edges])[0, 1])

    def flat_left(self, image: np.ndarray, output: np.ndarray) -> float:
        """Mean gradient magnitude away from ``B``, output over input (0 = perfectly flat)."""
        _, _, flat, gradient = self._prepare(image)
        return float(_luma_gradient(output)[flat].mean() / max(gradient[flat].mean(), 1e-8))

    def as_metrics(self) -> dict[str, evaluation.Metric]:
        return {
            "energy": self.energy,
            "edge_kept": self.edge_kept,
            "edge_corr": self.edge_correlation,
            "flat_left": self.flat_left,
        }


evaluation.METRIC_TITLES.update(
    {
        "energy": "energy",
        "edge_kept": "gradient kept on B",
        "edge_corr": "gradient corr. on B",
        "flat_left": "gradient left in flat",
    }
)
evaluation.METRIC_FORMATS.update(
    {"energy": ".2f", "edge_kept": ".3f", "edge_corr": ".3f", "flat_left": ".3f"}
)


def evaluate(run: EvalRun) -> list[EvalRow]:
    """Energy against direct Adam minimisation, and edges / flatness against a bilateral filter."""
    import json

    options, model, config = run.options, run.model, run.config.energy
    network = evaluation.network_method(model)
    metrics = SmoothingMetrics(config).as_metrics()
    frames = [
        cv2.resize(
            data.bgr8_to_rgb(scene.render(97 * k + 13).clean),
            None,
            fx=EVAL_SCALE,
            fy=EVAL_SCALE,
            interpolation=cv2.INTER_AREA,
        )
        for scene in data.scenes_for(options.split, *SCENE_EVAL_SIZE)
        for k in range(options.frames_per_scene)
    ]
    for folder in options.clean_dirs:
        frames += [
            _even(_fit_within(data.read_rgb(path), SCENE_EVAL_SIZE))
            for path in data.image_files(folder)
            if data.split_of(path.name) == options.split
        ]
    small = [
        cv2.resize(frame, ADAM_SIZE, interpolation=cv2.INTER_AREA) for frame in frames[:ADAM_IMAGES]
    ]
    identity: evaluation.Method = lambda image: image  # noqa: E731
    rows = [
        evaluation.score(
            f"direct minimisation: Adam, {ADAM_ITERATIONS} steps per image "
            f"({ADAM_SIZE[0]}x{ADAM_SIZE[1]})",
            [(image, image) for image in small],
            {"input": identity, "Adam": adam_minimiser(config), run.name: network},
            metrics,
        ),
        evaluation.score(
            "held-out frames",
            [(image, image) for image in frames],
            {
                "input": identity,
                "bilateral": lambda image: bilateral(image, config),
                run.name: network,
            },
            metrics,
        ),
    ]
    if options.json_path:
        options.json_path.write_text(json.dumps([row.__dict__ for row in rows], indent=2))
    if options.examples_path:
        example_methods = {
            "input": identity,
            "bilateral": lambda image: bilateral(image, config),
            run.name: network,
            f"detail x{EXAMPLE_DETAIL_GAIN:g}": _detail_method(model, EXAMPLE_DETAIL_GAIN),
        }
        picks = [frames[0], frames[len(frames) // 2], frames[-1]]
        evaluation.write_examples(
            options.examples_path,
            [(f"frame {i + 1}", (image, image)) for i, image in enumerate(picks)],
            example_methods,
            reference=None,
        )
    return rows


#: Passes of the bilateral baseline that make a held-out frame "already smooth".
SMOOTH_PASSES = 3


def already_smooth(run: EvalRun) -> FrameSets:
    """Frames with nothing left to smooth: the held-out frames at the eval scale after
    :data:`SMOOTH_PASSES` passes of the bilateral baseline."""
    config = run.config.energy
    sets = []
    for label, images in clean_frames(run):
        smoothed = []
        for image in images:
            image = _even(_fit_within(image, SCENE_EVAL_SIZE))
            for _ in range(SMOOTH_PASSES):
                image = bilateral(image, config)
            smoothed.append(np.clip(image, 0.0, 1.0))
        sets.append((f"{label}, {SMOOTH_PASSES} bilateral passes", smoothed))
    return sets


def smooth_harm_metrics(run: EvalRun) -> dict[str, evaluation.Metric]:
    """Output against input, plus the flat / edge measures (1 = left as it was)."""
    measures = SmoothingMetrics(run.config.energy).as_metrics()
    return {
        **evaluation.HARM_METRICS,
        "edge_kept": measures["edge_kept"],
        "flat_left": measures["flat_left"],
    }


def _detail_method(model: nn.Module, gain: float) -> evaluation.Method:
    smooth = evaluation.network_method(model)

    def magnify(image: np.ndarray) -> np.ndarray:
        base = smooth(image)
        return np.clip(base + gain * (image - base), 0.0, 1.0)

    return magnify


def _fit_within(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0], 1.0) * EVAL_SCALE
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _even(image: np.ndarray) -> np.ndarray:
    return image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]


RECIPE = Recipe(
    train_config=SmoothTrainConfig,
    sampler=FrameSampler,
    describe=lambda network: f"width {network.width}, dilations {list(network.dilations)}",
    data_recipe=_data_recipe,
    loss=lambda config, objective: "E_d + lambda_f E_f + lambda_e E_e (paper Eq. 1), 8-bit units",
    evaluate=evaluate,
    objective=lambda config, vgg: EnergyObjective(config.energy),
    validation=lambda batch, config: energy_validation(batch, config.energy),
    tiny_network={"width": 8, "dilations": [2, 1]},
    tiny_train={**TINY_TRAIN, "batch_size": 1, "validation_size": 1},
    harmless=already_smooth,
    harm_metrics=smooth_harm_metrics,
)
