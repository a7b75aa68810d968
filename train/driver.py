"""One driver that trains and evaluates any registered restorer from its recipe.

What every recipe repeated lives here once: the train config from YAML, the seed,
the starting network, the optional VGG features, the training frames and real
pairs, the fixed validation set, per-epoch samplers, the weights' metadata, and
:func:`~smokeclear.train.loop.fit_and_ship`; for evaluation, the weights, the real
pair sets and the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from smokeclear.config import load_config, to_mapping
from smokeclear.errors import UserError
from smokeclear.nets.loading import load_restorer, weights_metadata
from smokeclear.nets.wrappers import WorkScale
from smokeclear.registry import RestorerSpec, resolve
from smokeclear.train import data, evaluation
from smokeclear.train.data import SCENE_TRAIN_SIZE, VALIDATION_SEED
from smokeclear.train.distributed import Replicas, on_device
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.loop import (
    Batch,
    FitResult,
    Validation,
    fit_and_ship,
    initial_model,
    schedule_for,
)
from smokeclear.train.metrics import PSNR_8BIT_DB
from smokeclear.train.options import EvalOptions, TrainOptions
from smokeclear.train.recipe import EvalRun, Recipe, TrainingFrames
from smokeclear.train.vgg import optional_features

log = logging.getLogger(__name__)


def recipe_of(spec: RestorerSpec) -> Recipe:
    return resolve(spec.recipe)


def train_config(spec: RestorerSpec, config_path: Path | None = None) -> Any:
    """The recipe's train config from the ``train:`` section of ``config_path`` or the
    restorer's default YAML."""
    return load_config(
        recipe_of(spec).train_config, config_path or spec.default_config, section="train"
    )


def real_pairs(spec: RestorerSpec, folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, degraded, clean)`` for every file name in both pair folders of ``folder``."""
    if spec.pairs is None:
        raise UserError(f"{spec.name} does not take --pairs-dir", "Leave --pairs-dir out.")
    return data.load_pairs(folder, spec.pairs.degraded, spec.pairs.clean)


def validation_batch(spec: RestorerSpec, config: Any, clean_dirs: list[Path]) -> Any:
    """The fixed validation batch: validation-split photos and scenes, its own seed."""
    recipe = recipe_of(spec)
    frames = TrainingFrames(
        data.load_clean_folders(clean_dirs, "val"), data.scenes_for("val", *SCENE_TRAIN_SIZE)
    )
    sampler = recipe.sampler(
        frames, recipe.validation_config(config), np.random.default_rng(VALIDATION_SEED)
    )
    return sampler.batch(config.validation_size)


def _check_flags(spec: RestorerSpec, recipe: Recipe, pairs: tuple, vgg: Path | None) -> None:
    if pairs and spec.pairs is None:
        raise UserError(
            f"{spec.name} does not take --pairs-dir", f"Leave --pairs-dir out for {spec.name}."
        )
    if vgg is not None and recipe.perceptual is None:
        raise UserError(
            f"{spec.name} does not take --vgg-weights",
            f"Leave --vgg-weights out for {spec.name}.",
        )


def train(spec: RestorerSpec, options: TrainOptions, replicas: Replicas | None = None) -> FitResult:
    """Train ``spec`` and write ``out_dir/NAME.safetensors`` (FP16, ready to ship).

    ``replicas``: the device and, under torchrun, this process's rank (see
    :func:`smokeclear.train.distributed.session`); default one process on the CPU.
    Each rank draws its own batches (its own sampler seed).
    """
    replicas = replicas or Replicas()
    recipe = recipe_of(spec)
    _check_flags(spec, recipe, options.pairs_dirs, options.vgg_weights)
    config = train_config(spec, options.config_path)
    torch.manual_seed(config.seed)
    model = initial_model(spec, options)
    perceptual = recipe.perceptual
    vgg = None
    if perceptual is not None and getattr(config, perceptual.weight_field) > 0:
        vgg = optional_features(
            perceptual.arch, perceptual.layers, options.vgg_weights, perceptual.term
        )
    photos, scenes, pairs = data.training_frames(
        options.clean_dirs, options.pairs_dirs, lambda folder: real_pairs(spec, folder)
    )
    validation: Batch | Validation = recipe.validation(
        on_device(validation_batch(spec, config, list(options.clean_dirs)), replicas.device),
        config,
    )
    log.info(
        "training %s (%s) on %s: %d clean photos + %d scenes, %d real pairs, %d validation "
        "patches, %d px patches, %s",
        spec.name,
        recipe.describe(model.config),
        replicas.device,
        len(photos),
        len(scenes),
        len(pairs),
        config.validation_size,
        config.patch_size,
        replicas.describe_batch(config.batch_size),
    )
    frames = TrainingFrames(photos, scenes, pairs)

    def batches_for_epoch(epoch: int) -> Callable[[], Any]:
        rng = np.random.default_rng(replicas.sampler_seed(config.seed, epoch))
        sampler = recipe.sampler(frames, config, rng)
        return lambda: sampler.batch(config.batch_size)

    objective = recipe.objective(config, vgg) if recipe.objective is not None else None
    replicas.prepare_objective(objective)
    data_recipe = {**recipe.data_recipe(config), **data.frame_sources(options, len(photos))}
    if options.resume and options.init_weights is None:
        data_recipe["init_weights"] = _resumed_start(options.out_dir)
    if replicas.distributed:
        data_recipe["ranks"] = replicas.world_size
        data_recipe["effective_batch"] = replicas.world_size * config.batch_size
    if spec.pairs is not None:
        data_recipe["real_pairs_dirs"] = [str(p) for p in options.pairs_dirs]
        data_recipe["real_pairs"] = len(pairs)
    loss = recipe.loss(config, objective)
    if perceptual is not None:
        loss[perceptual.key] = perceptual.describe() if vgg is not None else "off"
        loss[f"{perceptual.key}_weights"] = str(options.vgg_weights) if vgg is not None else None
    return fit_and_ship(
        model,
        spec,
        batches_for_epoch=batches_for_epoch,
        validation=validation,
        **({"objective": objective} if objective is not None else {"loss_fn": F.mse_loss}),
        schedule=schedule_for(config, options),
        out_dir=options.out_dir,
        metadata={"train_config": to_mapping(config), "data_recipe": data_recipe, "loss": loss},
        resume=options.resume,
        keep_epochs=options.keep_epochs,
        progress=options.progress,
        replicas=replicas,
    )


def evaluate(spec: RestorerSpec, options: EvalOptions) -> list[EvalRow]:
    """Score ``spec``'s weights and its recipe's baselines on the held-out sets, then
    the do-no-harm rows (the network's output against its input on frames with
    nothing to fix); the rows' ``reference`` tells them apart."""
    recipe = recipe_of(spec)
    _check_flags(spec, recipe, options.pairs_dirs, None)
    sets = []
    for folder in options.pairs_dirs:
        cases = [(clean, degraded) for _, degraded, clean in real_pairs(spec, folder)]
        sets.append((f"real pairs: {folder.name}", cases))
    model = load_restorer(spec, options.weights, options.network_overrides)
    if options.work_scale != 1:
        model = WorkScale(model, options.work_scale).eval()
    run = EvalRun(
        spec.name,
        model,
        train_config(spec),
        options,
        sets,
        _trained_dirs(weights_metadata(options.weights or spec.weights)),
    )
    rows = recipe.evaluate(run)
    network = evaluation.network_method(run.model)
    harmless = evaluation.harm_rows(
        recipe.harmless(run), spec.name, network, recipe.harm_metrics(run)
    )
    if options.json_path:
        evaluation.write_rows(options.json_path, rows + harmless)
    return rows + harmless


def _resumed_start(out_dir: Path) -> str | None:
    """The ``--init`` weights of the run being resumed in ``out_dir`` (None: from scratch)."""
    last = out_dir / "last.safetensors"
    if not last.is_file():
        return None  # fit's resume says what is missing
    recipe = weights_metadata(last).get("data_recipe")
    return recipe.get("init_weights") if isinstance(recipe, dict) else None


def _trained_dirs(metadata: dict[str, Any]) -> tuple[str, ...]:
    """Names of the clean-photo folders the weights' data recipe lists."""
    recipe = metadata.get("data_recipe")
    folders = recipe.get("clean_dirs", []) if isinstance(recipe, dict) else []
    return tuple(Path(folder).name for folder in folders if isinstance(folder, str))


def format_table(
    spec: RestorerSpec, rows: list[EvalRow], work_scale: float = 1.0, split: str = "test"
) -> str:
    """The eval rows as markdown: the held-out table in the layout the recipe's paper
    uses, then the do-no-harm table; a ``split`` other than test is named above them."""
    column = recipe_of(spec).table_column
    table = [row for row in rows if row.reference != evaluation.INPUT_REFERENCE]
    harm = [row for row in rows if row.reference == evaluation.INPUT_REFERENCE]
    if column is None:
        text = evaluation.format_method_table(table)
    else:
        text = evaluation.format_table(table, column)
    if harm:
        title = (
            f"Do no harm: {spec.name}'s output against its input on frames with nothing to fix "
            f"(network at work scale {work_scale:g}; PSNR capped at "
            f"{PSNR_8BIT_DB:.1f} dB, the PSNR of 8-bit rounding)"
        )
        text += "\n\n" + evaluation.format_harm_table(harm, title)
    if split != "test":
        text = f"{split} split (for tuning; report the test split)\n\n{text}"
    return text
