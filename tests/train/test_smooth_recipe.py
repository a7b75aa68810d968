"""smooth recipe: config, frame sampler, the energy as loss and validation, baselines, metrics."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from smokeclear.config import load_config
from smokeclear.errors import UserError
from smokeclear.nets.loading import read_weights, weights_metadata
from smokeclear.nets.smooth import PAPER_DILATIONS, SmoothConfig, SmoothNet
from smokeclear.registry import get_restorer
from smokeclear.train import data, driver
from smokeclear.train.options import TrainOptions
from smokeclear.train.recipe import TrainingFrames
from smokeclear.train.smooth import (
    EnergyObjective,
    FrameSampler,
    SmoothingMetrics,
    SmoothTrainConfig,
    adam_minimiser,
    bilateral,
    energy_validation,
)
from smokeclear.train.smooth_energy import EnergyConfig, edge_map_of, energy

#: A 5 x 5 window keeps the energy cheap; the paper's is 21.
SMALL_ENERGY = EnergyConfig(window=5)
TINY_CONFIG = """\
network: {width: 8, dilations: [2, 1]}
train:
  patch_size: 32
  batch_size: 1
  validation_size: 2
  energy: {window: 5}
"""


def tiny_scenes():
    return data.scenes_for("train", 64, 48)


def tiny_net() -> SmoothNet:
    torch.manual_seed(0)
    net = SmoothNet(SmoothConfig(width=4, dilations=(2, 1)))
    with torch.no_grad():  # a non-zero residual, so the output is not the input
        net.to_rgb.weight.normal_(0, 0.5)
    return net


def step_with_noise(size: int = 48, seed: int = 0) -> np.ndarray:
    """``(size, size, 3)`` float32 RGB: a strong vertical step plus mild noise, in [0, 1]."""
    image = np.full((size, size, 3), 0.2, np.float32)
    image[:, size // 2 :] = 0.8
    noise = np.random.default_rng(seed).normal(0, 0.01, image.shape)
    return np.clip(image + noise, 0, 1).astype(np.float32)


def noisy_flat(size: int = 32, sigma: float = 0.02, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, (size, size, 3))
    return (0.5 + noise).astype(np.float32)


# --------------------------------------------------------------------------- config


def test_shipped_yaml_has_the_papers_energy_defaults():
    path = get_restorer("smooth").default_config
    config = load_config(SmoothTrainConfig, path, section="train")
    expected = {
        "sigma_color": 0.1,
        "sigma_space": 7.0,
        "flatten_weight": 1.0,  # lambda_f
        "edge_weight": 0.1,  # lambda_e
        "large_weight": 5.0,  # alpha
        "p_large": 2.0,
        "p_small": 0.8,
        "c1": 20.0,
        "c2": 10.0,
        "window": 21,  # h
    }
    for name, value in expected.items():
        assert getattr(config.energy, name) == value, f"paper Sec. 4: {name} = {value}"
        assert getattr(EnergyConfig(), name) == value, f"the code default {name} is the paper's"
    assert config.patch_size % 2 == 0
    network = load_config(SmoothConfig, path, section="network")
    assert network.dilations == PAPER_DILATIONS, "the shipped net keeps the paper's dilations"


@pytest.mark.parametrize(
    "settings", [{"patch_size": 33}, {"patch_size": 16}, {"noise_fraction": 1.5}]
)
def test_bad_train_config_is_refused(settings):
    with pytest.raises(ValueError):
        SmoothTrainConfig(**settings)


def test_an_unknown_energy_key_in_yaml_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: {energy: {windw: 5}}\n")
    with pytest.raises(UserError, match="windw"):
        load_config(SmoothTrainConfig, path, section="train")


# --------------------------------------------------------------------------- data


def test_sampler_batches_have_the_documented_shapes_and_are_deterministic():
    config = SmoothTrainConfig(patch_size=32)
    scenes = tiny_scenes()

    def draw(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return FrameSampler(TrainingFrames([], scenes), config, np.random.default_rng(seed)).batch(
            3
        )

    images, edge_maps = draw(5)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert edge_maps.shape == (3, 1, 32, 32) and edge_maps.dtype == torch.bool
    assert images.min() >= 0 and images.max() <= 1, "RGB in [0, 1]"
    assert torch.equal(edge_maps, edge_map_of(images)), "B is computed from each patch itself"
    again = draw(5)
    assert torch.equal(again[0], images) and torch.equal(again[1], edge_maps), (
        "the same generator seed must give the same batch"
    )
    assert not torch.equal(draw(6)[0], images), "another seed should give another batch"


def test_sampler_takes_photos_when_scene_fraction_is_zero():
    photo = np.full((40, 48, 3), 0.6, np.float32)
    config = SmoothTrainConfig(patch_size=32, scene_fraction=0.0, noise_fraction=0.0)
    frames = TrainingFrames([photo], tiny_scenes())
    images, edge_maps = FrameSampler(frames, config, np.random.default_rng(0)).batch(2)
    assert torch.equal(images, torch.full_like(images, 0.6)), "expected crops of the photo"
    assert not edge_maps.any(), "a flat photo has no important edges"


# --------------------------------------------------------------------------- loss and validation


def test_energy_objective_is_a_differentiable_scalar_and_records_its_terms():
    config = SmoothTrainConfig(patch_size=32)
    batch = FrameSampler(TrainingFrames([], tiny_scenes()), config, np.random.default_rng(0)).batch(
        2
    )
    model = tiny_net().eval()
    objective = EnergyObjective(SMALL_ENERGY)
    loss = objective(model, batch)
    assert loss.shape == () and loss.requires_grad
    with torch.no_grad():
        expected = energy(model(batch[0]), batch[0], batch[1], SMALL_ENERGY).total
    torch.testing.assert_close(loss.detach(), expected)
    assert set(objective.last_terms) == {"data", "flatten", "edge", "large_fraction"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in objective.last_terms.values())
    assert objective.last_terms["data"] > 0, "a non-zero residual costs data term"
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.to_rgb.weight.grad.abs().sum() > 0, "the loss reaches the network"
    assert objective.state_dict() == {}


class AddFixedNoise(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return image + 0.05 * torch.randn(image.shape, generator=generator)


def test_energy_validation_scores_minus_the_mean_energy():
    config = SmoothTrainConfig(patch_size=32)
    images, edge_maps = FrameSampler(
        TrainingFrames([], tiny_scenes()), config, np.random.default_rng(1)
    ).batch(2)
    validation = energy_validation((images, edge_maps), SMALL_ENERGY)
    assert validation.key == "val_neg_energy" and validation.label == "-energy"
    model = tiny_net().train()
    score = validation.score(model)
    assert not model.training, "validation runs the model in eval mode"
    with torch.no_grad():
        totals = [
            energy(model(images[i : i + 1]), images[i : i + 1], edge_maps[i : i + 1], SMALL_ENERGY)
            for i in range(2)
        ]
    expected = -float(np.mean([float(t.total) for t in totals]))
    assert math.isfinite(score) and score == pytest.approx(expected, rel=1e-5), (
        f"expected minus the mean energy {expected}, got {score}"
    )
    identity, noisy = validation.score(nn.Identity()), validation.score(AddFixedNoise())
    assert identity > noisy, f"adding noise must score lower: identity {identity}, noisy {noisy}"


# --------------------------------------------------------------------------- baselines


def test_bilateral_keeps_the_shape_and_flattens_noise_but_not_a_strong_step():
    noisy = noisy_flat()
    smoothed = bilateral(noisy, SMALL_ENERGY)
    assert smoothed.shape == noisy.shape and smoothed.dtype == np.float32
    assert smoothed.std() < 0.5 * noisy.std(), f"noise std {noisy.std()} -> {smoothed.std()}"
    step = step_with_noise()
    filtered = bilateral(step)
    jump = float((filtered[:, 24] - filtered[:, 23]).mean())
    assert jump > 0.5, f"expected the 0.6 step to survive the bilateral filter, got {jump:.3f}"


def test_adam_minimiser_lowers_the_energy():
    image = noisy_flat(seed=1)
    output = adam_minimiser(SMALL_ENERGY, iterations=20)(image)
    assert output.shape == image.shape and output.dtype == np.float32
    assert output.min() >= 0 and output.max() <= 1, "clamped to [0, 1]"
    metrics = SmoothingMetrics(SMALL_ENERGY)
    before, after = metrics.energy(image, image), metrics.energy(image, output)
    assert after < 0.8 * before, f"expected the energy to fall by 20% or more: {before} -> {after}"


# --------------------------------------------------------------------------- metrics


def test_smoothing_metrics_of_the_identity_and_of_a_constant():
    image = step_with_noise()
    assert edge_map_of(torch.from_numpy(image.transpose(2, 0, 1))[None]).any(), "B not empty"
    metrics = SmoothingMetrics(SMALL_ENERGY).as_metrics()
    assert set(metrics) == {"energy", "edge_kept", "edge_corr", "flat_left"}
    for name in ("edge_kept", "edge_corr", "flat_left"):
        value = metrics[name](image, image)
        assert value == pytest.approx(1.0, abs=1e-5), f"identity: {name} should be 1, got {value}"
    constant = np.full_like(image, 0.5)
    assert metrics["flat_left"](image, constant) == 0.0, "a constant output is perfectly flat"
    assert metrics["edge_kept"](image, constant) == 0.0, "a constant output keeps no edge"
    smoothed = bilateral(image)
    assert metrics["flat_left"](image, smoothed) < 0.5, "the bilateral filter flattens the noise"
    tensor = torch.from_numpy(image.transpose(2, 0, 1))[None]
    expected = float(energy(tensor, tensor, edge_map_of(tensor), SMALL_ENERGY).total)
    assert metrics["energy"](image, image) == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- end to end


def test_train_writes_fp16_weights_with_the_validation_energy(tmp_path):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(TINY_CONFIG)
    out = tmp_path / "run"
    options = TrainOptions(
        out_dir=out, max_epochs=1, steps_per_epoch=2, config_path=config_path, progress=False
    )
    result = driver.train(get_restorer("smooth"), options)
    weights = out / "smooth.safetensors"
    assert weights.is_file(), "expected out_dir/smooth.safetensors"
    metadata = weights_metadata(weights)
    assert "val_neg_energy" in metadata, f"expected the validation key, got {sorted(metadata)}"
    score = float(metadata["val_neg_energy"])
    assert math.isfinite(score) and score < 0, "minus a positive energy"
    assert score == pytest.approx(result.best_score)
    assert result.score_key == "val_neg_energy"
    assert metadata["network_config"]["width"] == 8
    assert list(metadata["network_config"]["dilations"]) == [2, 1]
    assert metadata["train_config"]["energy"]["window"] == 5
    tensors, _ = read_weights(weights)
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
