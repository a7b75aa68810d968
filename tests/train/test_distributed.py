"""Training under torchrun: two CPU ranks (gloo) of a tiny config end up alike.

The ranks are forked from the test process (``torch.multiprocessing``, fork: no
second import of torch), each with torchrun's environment, and run
:func:`smokeclear.train.driver.train` inside :func:`distributed.session`. A hook
around :func:`smokeclear.train.loop.fit` records in each rank what the test
compares: the weights and buffers at the end, the discriminator's, the first
batches drawn, the validation history and every file the rank wrote.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from smokeclear.cli import main
from smokeclear.errors import UserError
from smokeclear.nets.loading import weights_metadata
from smokeclear.registry import get_restorer
from smokeclear.synthetic.scene.laparoscopic import LaparoscopicScene
from smokeclear.train import data, distributed, driver, loop
from smokeclear.train.distributed import (
    Launch,
    Replicas,
    choose_backend,
    choose_device,
    launch_from_env,
    on_device,
)
from smokeclear.train.options import TrainOptions
from smokeclear.train.recipe import write_tiny_config

WORLD_SIZE = 2
FULL_ENV = {
    "RANK": "1",
    "WORLD_SIZE": "2",
    "LOCAL_RANK": "1",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


def _become_rank(rank: int, port: int) -> None:
    """This process as torchrun's rank ``rank`` of :data:`WORLD_SIZE`, one thread."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_RANK=str(rank),
    )


def _rank(rank: int, name: str, config: Path, out_dir: Path, results: Path, port: int) -> None:
    """One rank's tiny training, one epoch and a resumed second; what it did in
    ``results/rank{rank}.pt``."""
    _become_rank(rank, port)
    record: dict[str, Any] = {"writes": [], "batches": []}
    fit, save_weights, torch_save = loop.fit, loop.save_weights, torch.save

    def recording_fit(model, spec, *, batches_for_epoch, **arguments):
        def recorded(epoch: int):
            next_batch = batches_for_epoch(epoch)

            def draw():
                batch = next_batch()
                record["batches"].append(batch[0].clone())
                return batch

            return draw

        record["initial"] = _cpu_state(model)
        result = fit(model, spec, batches_for_epoch=recorded, **arguments)
        record["final"] = _cpu_state(model)
        adversary = getattr(arguments.get("objective"), "adversary", None)
        if adversary is not None:
            record["discriminator"] = _cpu_state(adversary.discriminator)
        record["history"] = [
            {k: v for k, v in epoch.items() if k != "seconds"} for epoch in result.history
        ]
        return result

    def recording_save_weights(module, path, *args, **kwargs):
        record["writes"].append(Path(path).name)
        return save_weights(module, path, *args, **kwargs)

    def recording_save(state, path, *args, **kwargs):
        if isinstance(path, str | os.PathLike):  # not the buffers torch pickles into
            record["writes"].append(Path(path).name)
        return torch_save(state, path, *args, **kwargs)

    loop.fit, loop.save_weights, torch.save = recording_fit, recording_save_weights, recording_save
    spec = get_restorer(name)
    options = TrainOptions(out_dir=out_dir, config_path=config, steps_per_epoch=1, progress=False)
    with distributed.session("cpu") as replicas:
        assert (replicas.rank, replicas.world_size, replicas.backend) == (rank, 2, "gloo")
        driver.train(spec, TrainOptions(**{**options.__dict__, "max_epochs": 1}), replicas)
        driver.train(
            spec, TrainOptions(**{**options.__dict__, "max_epochs": 2, "resume": True}), replicas
        )
    torch_save(record, results / f"rank{rank}.pt")


@pytest.fixture
def small_scenes(monkeypatch: pytest.MonkeyPatch):
    """One small synthetic scene per split, made once before the ranks are forked."""
    scenes = {
        split: [LaparoscopicScene(96, 64, seed=data.SCENE_SEEDS[split][0])]
        for split in ("train", "val")
    }
    monkeypatch.setattr(data, "scenes_for", lambda split, width, height: scenes[split])
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo once


def run_two_ranks(name: str, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    config = write_tiny_config(driver.recipe_of(get_restorer(name)), tmp_path / "tiny.yaml")
    out_dir, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    mp.start_processes(
        _rank,
        args=(name, config, out_dir, results, _free_port()),
        nprocs=WORLD_SIZE,
        start_method="fork",
    )
    return out_dir, [
        torch.load(results / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)
    ]


def assert_same_state(first: dict, second: dict, what: str) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), f"{what} {key} differs between the ranks"


@pytest.mark.parametrize(
    ("name", "shared"),
    [
        ("desmoke", "batch-norm statistics"),
        ("enhance", "the discriminator"),
        ("dereflect", "the discriminator, a loss through iterate()"),
    ],
)
def test_two_ranks_train_alike_on_their_own_batches(name, shared, tmp_path, small_scenes):
    out_dir, (main_rank, other) = run_two_ranks(name, tmp_path)

    assert_same_state(main_rank["final"], other["final"], "weight or buffer")
    changed = [
        k
        for k in main_rank["final"]
        if not torch.equal(main_rank["final"][k], main_rank["initial"][k])
    ]
    assert changed, "the weights should have trained"
    if name == "desmoke":
        assert any("running_mean" in key for key in changed), f"{shared} should be updated"
    else:
        assert_same_state(main_rank["discriminator"], other["discriminator"], "discriminator")
    assert main_rank["history"] == other["history"], "validation and loss the same on every rank"
    assert [h["epoch"] for h in main_rank["history"]] == [1, 2], "resumed for a second epoch"

    assert len(main_rank["batches"]) == len(other["batches"]) == 2, "1 step x 2 epochs each"
    for mine, theirs in zip(main_rank["batches"], other["batches"], strict=True):
        assert not torch.equal(mine, theirs), "each rank draws its own batches"

    files = {"best.safetensors", "last.safetensors", "last.state.pt", f"{name}.safetensors"}
    assert other["writes"] == [], "only rank 0 writes"
    assert set(main_rank["writes"]) == files
    assert {p.name for p in out_dir.iterdir()} == files
    recipe = weights_metadata(out_dir / f"{name}.safetensors")["data_recipe"]
    assert (recipe["ranks"], recipe["effective_batch"]) == (2, 4), "2 ranks x batch 2"


def _resume_nothing(rank: int, out_dir: Path, results: Path, port: int) -> None:
    """One rank resuming from an empty folder; its error message in ``results``."""
    _become_rank(rank, port)
    options = TrainOptions(out_dir=out_dir, resume=True, progress=False)
    config = write_tiny_config(driver.recipe_of(get_restorer("enhance")), results / "tiny.yaml")
    with distributed.session("cpu") as replicas:
        try:
            driver.train(get_restorer("enhance"), replace(options, config_path=config), replicas)
        except UserError as error:
            (results / f"rank{rank}.txt").write_text(error.problem)


def test_a_resume_error_on_rank_0_reaches_every_rank(tmp_path, small_scenes):
    (tmp_path / "run").mkdir()
    mp.start_processes(
        _resume_nothing,
        args=(tmp_path / "run", tmp_path, _free_port()),
        nprocs=WORLD_SIZE,
        start_method="fork",
    )
    for rank in range(WORLD_SIZE):
        assert "nothing to resume" in (tmp_path / f"rank{rank}.txt").read_text(), (
            f"rank {rank} should raise rank 0's error, not wait for a state that never comes"
        )


def test_torchrun_environment_all_or_nothing():
    assert launch_from_env({"MASTER_ADDR": "somewhere"}) is None, "not under torchrun"
    assert launch_from_env(FULL_ENV) == Launch(rank=1, local_rank=1, world_size=2)
    with pytest.raises(UserError, match="half set: RANK but not WORLD_SIZE, LOCAL_RANK"):
        launch_from_env({"RANK": "0"})
    with pytest.raises(UserError, match="not whole numbers"):
        launch_from_env({**FULL_ENV, "RANK": "first"})
    with pytest.raises(UserError, match="do not fit together"):
        launch_from_env({**FULL_ENV, "RANK": "2"})


def test_a_backend_or_device_that_is_not_there_is_one_clear_error():
    with pytest.raises(UserError, match="nccl needs CUDA GPUs"):
        choose_backend("nccl", torch.device("cpu"))
    assert choose_backend("auto", torch.device("cpu")) == "gloo"
    assert choose_device("cpu", 3) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert choose_device("auto") == torch.device("cpu"), "CPU by default without a GPU"
        with pytest.raises(UserError, match="sees no CUDA GPU"):
            choose_device("cuda")


def test_the_cli_refuses_half_a_torchrun_environment(tmp_path, monkeypatch, capsys):
    for name in FULL_ENV:
        monkeypatch.delenv(name, raising=False)
    out = str(tmp_path / "run")
    assert main(["train", "desmoke", "--out", out, "--backend", "nccl"]) == 2
    assert "--backend nccl is for training under torchrun" in capsys.readouterr().err
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main(["train", "desmoke", "--out", out]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "half set: LOCAL_RANK but not RANK" in error


def test_one_process_keeps_its_seeds_and_ranks_get_their_own():
    assert Replicas().sampler_seed(7, 3) == [7, 3], "single-process runs draw as before"
    seeds = {tuple(Replicas(r, 4, distributed=True).sampler_seed(7, 3)) for r in range(4)}
    assert len(seeds) == 4
    assert (
        Replicas(1, 4, distributed=True)
        .describe_batch(8)
        .startswith("batch 8 per rank x 4 ranks = 32")
    )


class Pair(NamedTuple):
    image: torch.Tensor
    alpha: torch.Tensor | None


def test_batches_of_any_form_go_to_the_device():
    moved = on_device(Pair(torch.zeros(1), None), torch.device("cpu"))
    assert isinstance(moved, Pair) and moved[1] is None
    batch = on_device([torch.ones(2), (torch.ones(1), "label")], torch.device("cpu"))
    assert isinstance(batch, list) and batch[1][1] == "label"
    np.testing.assert_array_equal(batch[0].numpy(), [1.0, 1.0])
