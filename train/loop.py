"""A supervised training loop for paired restorers: Adam, early stopping, checkpoints.

Follows the desmoke paper's recipe (Sec. 4.2): Adam and early stopping on
validation PSNR with a patience and a minimum improvement. The paper keeps the
learning rate fixed; ``plateau_patience`` > 0 halves it after that many epochs
without improvement (off with 0). Checkpoints
are safetensors (weights + JSON metadata) plus a small optimizer-state file read
back with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from smokeclear.config import load_config
from smokeclear.errors import UserError
from smokeclear.nets.loading import build_network, load_restorer, read_weights, save_weights
from smokeclear.registry import RestorerSpec, resolve
from smokeclear.train.distributed import Replicas, on_device
from smokeclear.train.options import TrainOptions

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]  # (degraded, clean), each (B, 3, H, W) RGB [0, 1]


class Objective(Protocol):
    """A training loss that needs more than ``loss_fn(model(degraded), clean)``.

    For recipes with several outputs per image, extra targets in the batch, an
    adversary with its own optimizer, or per-parameter gradient clipping.
    """

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The generator loss of one batch (may step its own adversary first)."""
        ...

    def after_backward(self, model: nn.Module) -> None:
        """Runs between ``backward`` and the optimizer step (gradient clipping)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StatelessObjective:
    """Base of an :class:`Objective` with nothing to clip and no state to checkpoint."""

    def after_backward(self, model: nn.Module) -> None:
        """Nothing to clip."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class Schedule:
    learning_rate: float
    steps_per_epoch: int
    max_epochs: int
    patience: int
    min_delta: float
    plateau_patience: int = 0  # halve the learning rate after this many flat epochs; 0: off
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's
    weight_decay: float = 0.0  # Adam's L2 penalty


def schedule_for(config: Any, options: TrainOptions) -> Schedule:
    """A recipe's schedule: its train config's fields, ``--max-epochs`` and
    ``--steps-per-epoch`` overriding; Adam's betas and weight decay where the config has them.
    """
    return Schedule(
        learning_rate=config.learning_rate,
        steps_per_epoch=options.steps_per_epoch or config.steps_per_epoch,
        max_epochs=options.max_epochs or config.max_epochs,
        patience=config.patience,
        min_delta=config.min_delta,
        plateau_patience=config.plateau_patience,
        betas=getattr(config, "betas", Schedule.betas),
        weight_decay=getattr(config, "weight_decay", Schedule.weight_decay),
    )


def initial_model(spec: RestorerSpec, options: TrainOptions) -> nn.Module:
    """The network to train: when resuming, the run's last checkpoint (with its own config);
    else ``--init`` weights (likewise), else a fresh one built from the ``network:`` section
    of ``--config`` or the restorer's default config.

    Resuming takes the network's shape from the checkpoint, so a run started with ``--init``
    and a train-only ``--config`` resumes without ``--init`` again.
    """
    last = options.out_dir / "last.safetensors"
    if options.resume and last.is_file():
        return load_restorer(spec, last)
    if options.init_weights is not None:
        log.info("starting from %s", options.init_weights)
        return load_restorer(spec, options.init_weights)
    config_path = options.config_path or spec.default_config
    return build_network(spec, load_config(resolve(spec.network_config), config_path, "network"))


@dataclass(frozen=True)
class Validation:
    """A validation score other than PSNR on pairs (unsupervised recipes). Higher is better.

    ``key`` names it in the history and the weights' metadata (``val_...``);
    ``label`` and ``unit`` in the log.
    """

    key: str
    label: str
    unit: str
    score: Callable[[nn.Module], float]


#: The default validation: mean PSNR of the model on (degraded, clean) pairs.
PSNR_KEY, PSNR_LABEL, PSNR_UNIT = "val_psnr", "PSNR", "dB"


def as_validation(validation: Batch | Validation, device: torch.device | str) -> Validation:
    """``validation`` as a :class:`Validation`: pairs become mean PSNR on ``device``."""
    if isinstance(validation, Validation):
        return validation
    pairs = on_device(validation, device)
    return Validation(PSNR_KEY, PSNR_LABEL, PSNR_UNIT, lambda model: validate(model, pairs))


@dataclass(frozen=True)
class FitResult:
    best_weights: Path
    best_score: float
    epochs: int
    stopped_early: bool
    history: list[dict[str, float]]
    score_key: str = PSNR_KEY
    score_label: str = PSNR_LABEL
    score_unit: str = PSNR_UNIT

    def describe(self) -> str:
        """e.g. ``"best validation PSNR 27.31 dB"``."""
        return f"best validation {self.score_label} {_score_text(self.best_score, self.score_unit)}"


def _score_text(score: float, unit: str) -> str:
    """``"27.31 dB"``, or ``"-1039.57"`` for a score without a unit."""
    return f"{score:.2f} {unit}".rstrip()


def batch_psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of clamped ``output`` against ``target``. ``(B, ...)`` -> ``(B,)``."""
    mse = (output.clamp(0.0, 1.0) - target).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def validate(model: nn.Module, validation: Batch, batch_size: int = 16) -> float:
    """Mean PSNR of ``model`` over the validation pairs."""
    model.eval()
    degraded, clean = validation
    scores = [
        batch_psnr(model(degraded[i : i + batch_size]), clean[i : i + batch_size])
        for i in range(0, len(degraded), batch_size)
    ]
    return float(torch.cat(scores).mean())


def fit(
    model: nn.Module,
    spec: RestorerSpec,
    *,
    batches_for_epoch: Callable[[int], Callable[[], Batch]],
    validation: Batch | Validation,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    objective: Objective | None = None,
    schedule: Schedule,
    out_dir: Path,
    metadata: dict[str, Any],
    resume: bool = False,
    progress: bool = True,
    replicas: Replicas | None = None,
    keep_epochs: bool = False,
) -> FitResult:
    """Train ``model`` until its validation score (PSNR by default) stops improving.

    Args:
        batches_for_epoch: epoch number -> a function returning the next training
            batch. Seeding per epoch makes a resumed run draw the same data.
        validation: fixed (degraded, clean) pairs for early stopping on PSNR, or a
            :class:`Validation` with its own score.
        loss_fn: ``loss_fn(model(degraded), clean)`` on ``(degraded, clean)`` batches;
            or else
        objective: the loss of a whole batch of any form (see :class:`Objective`).
        out_dir: receives ``last.safetensors``, ``last.state.pt`` and ``best.safetensors``.
        metadata: recorded in every checkpoint (config, data recipe, ...).
        resume: continue from ``out_dir/last.*``.
        keep_epochs: also keep every epoch's weights as ``out_dir/epochNNN.safetensors``.
        replicas: the device, and under torchrun the ranks (see
            :mod:`~smokeclear.train.distributed`): ``model``, the batches and
            ``validation`` go to its device (the objective's nets are the caller's);
            rank 0 scores validation and writes the files. Default: one CPU process.
    """
    if (loss_fn is None) == (objective is None):
        raise ValueError("give exactly one of loss_fn and objective")
    replicas = replicas or Replicas()
    if replicas.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    model.to(replicas.device)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=schedule.learning_rate,
        betas=schedule.betas,
        weight_decay=schedule.weight_decay,
    )
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=0.5,
            patience=schedule.plateau_patience,
            threshold=schedule.min_delta,
            threshold_mode="abs",
        )
        if schedule.plateau_patience > 0
        else None
    )
    scorer = as_validation(validation, replicas.device)
    key, label, unit, score = scorer.key, scorer.label, scorer.unit, scorer.score

    start_epoch, best_score, bad_epochs = 0, -math.inf, 0
    history: list[dict[str, float]] = []
    if resume:
        start_epoch, best_score, bad_epochs, history = _restore(
            model, optimizer, plateau, objective, out_dir, replicas
        )
        log.info(
            "resumed at epoch %d (best validation %s %s)",
            start_epoch,
            label,
            _score_text(best_score, unit),
        )

    trained = replicas.replicate(model)
    epoch = start_epoch
    stopped_early = False
    for epoch in range(start_epoch, schedule.max_epochs):
        if bad_epochs >= schedule.patience:
            stopped_early = True
            break
        next_batch = batches_for_epoch(epoch)
        model.train()
        started = time.monotonic()
        running = 0.0
        steps = _progress(
            schedule.steps_per_epoch, f"epoch {epoch + 1}", progress and replicas.is_main
        )
        for step in steps:
            batch = on_device(next_batch(), replicas.device)
            if objective is None:
                loss = loss_fn(trained(batch[0]), batch[1])
            else:
                loss = objective(trained, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if objective is not None:
                objective.after_backward(model)
            optimizer.step()
            running += loss.detach().item()
            if hasattr(steps, "set_postfix") and step % 10 == 0:
                steps.set_postfix(loss=f"{running / (step + 1):.5f}")
        replicas.share_buffers(model)
        val_score = replicas.share_score(lambda: score(model))
        if plateau is not None:
            plateau.step(val_score)
        improved = val_score > best_score + schedule.min_delta
        bad_epochs = 0 if improved else bad_epochs + 1
        best_score = max(best_score, val_score)
        record = {
            "epoch": epoch + 1,
            "train_loss": replicas.mean(running / schedule.steps_per_epoch),
            key: val_score,
            "learning_rate": optimizer.param_groups[0]["lr"],
            "seconds": time.monotonic() - started,
        }
        history.append(record)
        log.info(
            "epoch %d: loss %.5f, validation %s %s%s (%.0f s)",
            epoch + 1,
            record["train_loss"],
            label,
            _score_text(val_score, unit),
            " (best)" if improved else "",
            record["seconds"],
        )
        checkpoint_metadata = {
            **metadata,
            "epoch": epoch + 1,
            key: val_score,
            "history": history,
        }
        if replicas.is_main:
            if improved:
                save_weights(model, out_dir / "best.safetensors", spec, checkpoint_metadata)
            save_weights(model, out_dir / "last.safetensors", spec, checkpoint_metadata)
            if keep_epochs:
                shutil.copyfile(
                    out_dir / "last.safetensors", out_dir / f"epoch{epoch + 1:03d}.safetensors"
                )
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "plateau": plateau.state_dict() if plateau is not None else {},
                    "objective": objective.state_dict() if objective is not None else {},
                    "epoch": epoch + 1,
                    "best_score": best_score,
                    "bad_epochs": bad_epochs,
                    "history": history,
                },
                out_dir / "last.state.pt",
            )
        replicas.barrier()
    else:
        epoch = schedule.max_epochs
        stopped_early = bad_epochs >= schedule.patience
    return FitResult(
        out_dir / "best.safetensors", best_score, epoch, stopped_early, history, key, label, unit
    )


def fit_and_ship(
    model: nn.Module, spec: RestorerSpec, *, out_dir: Path, metadata: dict[str, Any], **arguments
) -> FitResult:
    """:func:`fit`, then write the best checkpoint as ``out_dir/NAME.safetensors`` in FP16.

    The FP16 file is what the package ships: it carries ``metadata`` plus the best
    validation score (``val_psnr`` or the recipe's key), the epochs run and the training time.
    Under torchrun rank 0 writes it while the others wait.
    """
    from smokeclear.nets.loading import load_restorer

    replicas = arguments.get("replicas") or Replicas()
    started = time.monotonic()
    result = fit(model, spec, out_dir=out_dir, metadata=metadata, **arguments)
    shipped = out_dir / f"{spec.name}.safetensors"
    if replicas.is_main:
        save_weights(
            load_restorer(spec, result.best_weights),
            shipped,
            spec,
            {
                **metadata,
                result.score_key: result.best_score,
                "epochs": result.epochs,
                "train_seconds": round(time.monotonic() - started),
            },
            dtype=torch.float16,
        )
    replicas.barrier()
    log.info("%s; FP16 weights in %s", result.describe(), shipped)
    return result


def _restore(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None,
    objective: Objective | None,
    out_dir: Path,
    replicas: Replicas,
) -> tuple[int, float, int, list[dict[str, float]]]:
    tensors, state = replicas.from_main(lambda: _read_checkpoint(out_dir))
    model.load_state_dict(tensors)
    optimizer.load_state_dict(state["optimizer"])
    if plateau is not None and state.get("plateau"):
        plateau.load_state_dict(state["plateau"])
    if objective is not None and state.get("objective"):
        objective.load_state_dict(state["objective"])
    best = state["best_score"] if "best_score" in state else state["best_psnr"]  # older runs
    return state["epoch"], best, state["bad_epochs"], list(state["history"])


def _read_checkpoint(out_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and training state of ``out_dir/last.*``, on the CPU."""
    weights, state_path = out_dir / "last.safetensors", out_dir / "last.state.pt"
    if not weights.is_file() or not state_path.is_file():
        raise UserError(
            f"nothing to resume in {out_dir} (no last.safetensors / last.state.pt)",
            "Leave out --resume to start a new run, or point --out at an earlier run.",
        )
    tensors, _ = read_weights(weights)
    try:
        state = torch.load(state_path, weights_only=True, map_location="cpu")
    except Exception as error:
        raise UserError(
            f"training state {state_path} is unreadable ({type(error).__name__})",
            "Start a new run without --resume.",
        ) from None
    return tensors, state


def _progress(total: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return range(total)
    from tqdm import tqdm

    return tqdm(range(total), desc=description, leave=False, dynamic_ncols=True)
