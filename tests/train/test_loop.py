from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smokeclear.errors import UserError
from smokeclear.nets.desmoke import DesmokeConfig, DesmokeNet
from smokeclear.nets.loading import weights_metadata
from smokeclear.registry import get_restorer
from smokeclear.train.loop import Schedule, batch_psnr, fit

DESMOKE = get_restorer("desmoke")


def tiny_problem():
    torch.manual_seed(0)
    clean = torch.rand(4, 3, 32, 32)
    smoky = clean * 0.6 + 0.35

    def batches_for_epoch(epoch: int):
        return lambda: (smoky, clean)

    return (smoky, clean), batches_for_epoch


def fit_tiny(out_dir: Path, schedule: Schedule, **options):
    """``fit`` a width-4 desmoke on :func:`tiny_problem`; ``options`` override the defaults."""
    validation, batches = tiny_problem()
    arguments = {
        "batches_for_epoch": batches,
        "validation": validation,
        "loss_fn": F.mse_loss,
        "schedule": schedule,
        "out_dir": out_dir,
        "metadata": {},
        "progress": False,
        **options,
    }
    return fit(DesmokeNet(DesmokeConfig(width=4, max_channels=8)), DESMOKE, **arguments)


def test_fit_improves_writes_checkpoints_and_resumes(tmp_path: Path):
    schedule = Schedule(
        learning_rate=1e-2, steps_per_epoch=5, max_epochs=2, patience=5, min_delta=1e-4
    )
    first = fit_tiny(tmp_path, schedule, metadata={"recipe": "test"})
    assert first.epochs == 2 and len(first.history) == 2
    assert first.history[-1]["val_psnr"] > first.history[0]["val_psnr"] - 0.5
    for name in ("best.safetensors", "last.safetensors", "last.state.pt"):
        assert (tmp_path / name).is_file()
    assert weights_metadata(tmp_path / "best.safetensors")["recipe"] == "test"

    longer = Schedule(**{**schedule.__dict__, "max_epochs": 3})
    resumed = fit_tiny(tmp_path, longer, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3], "resume continues the history"


def test_early_stopping_after_patience(tmp_path: Path):
    schedule = Schedule(
        learning_rate=0.0, steps_per_epoch=1, max_epochs=20, patience=2, min_delta=1e-4
    )
    result = fit_tiny(tmp_path, schedule)
    assert result.stopped_early and result.epochs == 3, "1 improvement, then 2 without"


def test_resume_without_a_run(tmp_path: Path):
    with pytest.raises(UserError, match="nothing to resume"):
        fit_tiny(tmp_path, Schedule(1e-3, 1, 1, 1, 0.0), resume=True)


def test_batch_psnr():
    target = torch.zeros(2, 3, 4, 4)
    assert torch.allclose(batch_psnr(target + 0.1, target), torch.tensor([20.0, 20.0]))


def test_plateau_halves_the_learning_rate(tmp_path: Path):
    schedule = Schedule(
        learning_rate=1e-3,
        steps_per_epoch=1,
        max_epochs=5,
        patience=10,
        min_delta=1e-4,
        plateau_patience=1,
    )

    def no_learning(output, target):  # zero gradients: validation stays flat
        return (output * 0).sum()

    result = fit_tiny(tmp_path, schedule, loss_fn=no_learning)
    rates = [h["learning_rate"] for h in result.history]
    assert rates[-1] < rates[0], f"flat validation should lower the rate: {rates}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_on_one_gpu_moves_network_batches_and_validation(tmp_path: Path):
    from smokeclear.train.distributed import Replicas, choose_device

    schedule = Schedule(
        learning_rate=1e-2, steps_per_epoch=2, max_epochs=1, patience=5, min_delta=1e-4
    )
    net = DesmokeNet(DesmokeConfig(width=4, max_channels=8))
    validation, batches = tiny_problem()  # CPU tensors
    result = fit(
        net,
        DESMOKE,
        batches_for_epoch=batches,
        validation=validation,
        loss_fn=F.mse_loss,
        schedule=schedule,
        out_dir=tmp_path,
        metadata={},
        progress=False,
        replicas=Replicas(device=choose_device("auto")),
    )
    assert next(net.parameters()).is_cuda, "--device auto takes the GPU"
    assert np.isfinite(result.best_score)
    assert (tmp_path / "best.safetensors").is_file()
