import json

import numpy as np
import pytest
import torch

from smokeclear.config import to_mapping
from smokeclear.nets.enhance import EnhanceConfig, EnhanceNet
from smokeclear.nets.loading import save_weights
from smokeclear.registry import get_restorer
from smokeclear.synthetic.weak_camera import NO_FAULTS
from smokeclear.train import data
from smokeclear.train.enhance import (
    EVAL_FAULTS,
    RECIPE,
    EnhanceObjective,
    EnhanceTrainConfig,
    WeakCameraSampler,
    auto_levels,
)
from smokeclear.train.enhance_losses import color_loss, pixel_loss, tv_loss
from smokeclear.train.losses import generator_loss
from smokeclear.train.recipe import TrainingFrames


def tiny_net() -> EnhanceNet:
    torch.manual_seed(0)
    return EnhanceNet(EnhanceConfig(width=4, blocks=1))


def tiny_scenes():
    return data.scenes_for("train", 96, 64)[:1]


def tiny_config(**overrides) -> EnhanceTrainConfig:
    return EnhanceTrainConfig(**{"patch_size": 32, "discriminator_width": 2, **overrides})


# --------------------------------------------------------------------------- objective


def test_objective_is_the_papers_weighted_sum_and_steps_the_discriminator(conv_features, stepped):
    objective = EnhanceObjective(tiny_config(), vgg=conv_features("relu"))
    net = tiny_net()
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 32, 32, generator=generator)
    weak = 0.7 * clean + 0.1
    loss = stepped(objective, net, (weak, clean))

    terms = objective.last_terms
    assert set(terms) == {"content", "texture", "color", "tv"}, "pixel is 0 in the paper"
    with torch.no_grad():
        output = net(weak)
        assert terms["color"] == pytest.approx(color_loss(output, clean).item(), rel=1e-5)
        assert terms["tv"] == pytest.approx(tv_loss(output).item(), rel=1e-5)
        texture = generator_loss(objective.adversary.discriminator.eval()(output)).item()
    assert terms["texture"] == pytest.approx(texture, rel=1e-4), "after D's step"
    expected = terms["content"] + 0.4 * terms["texture"] + 0.1 * terms["color"] + 400 * terms["tv"]
    assert loss.item() == pytest.approx(expected, rel=1e-5), "Eq. 8"

    discriminator_grads = [p.grad.clone() for p in objective.adversary.discriminator.parameters()]
    loss.backward()
    for grad, parameter in zip(
        discriminator_grads, objective.adversary.discriminator.parameters(), strict=True
    ):
        assert torch.equal(grad, parameter.grad), "the generator's loss must not train D"
    assert net.head[0].weight.grad is not None


def test_objective_without_vgg_and_texture_uses_the_configured_terms_only():
    config = tiny_config(texture_weight=0, pixel_weight=0.5, tv_weight=0)
    objective = EnhanceObjective(config, vgg=None)
    assert objective.adversary is None and objective.state_dict() == {}
    objective.load_state_dict({})
    clean = torch.rand(1, 3, 32, 32)
    net = tiny_net()
    loss = objective(net, (clean * 0.5, clean))
    assert set(objective.last_terms) == {"color", "pixel"}
    with torch.no_grad():
        output = net(clean * 0.5)
        expected = 0.1 * color_loss(output, clean) + 0.5 * pixel_loss(output, clean)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_objective_state_round_trips():
    config = tiny_config()
    objective = EnhanceObjective(config, vgg=None)
    clean = torch.rand(2, 3, 32, 32)
    objective(tiny_net(), (clean * 0.5, clean))
    state = objective.state_dict()
    assert set(state) == {"discriminator", "discriminator_optimizer"}
    other = EnhanceObjective(config, vgg=None)
    other.load_state_dict(state)
    for a, b in zip(
        other.adversary.discriminator.state_dict().values(),
        objective.adversary.discriminator.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), "weights and batch-norm statistics come back"
    assert other.adversary.optimizer.state_dict()["state"], "so do Adam's moments"


# --------------------------------------------------------------------------- data


def test_sampler_degrades_clean_patches_and_is_deterministic():
    config = tiny_config(identity_fraction=0.0)

    def draw(seed: int):
        return WeakCameraSampler(
            TrainingFrames([], tiny_scenes()), config, np.random.default_rng(seed)
        ).batch(3)

    weak, clean = draw(5)
    assert weak.shape == clean.shape == (3, 3, 32, 32) and weak.dtype == torch.float32
    assert float(weak.min()) >= 0 and float(weak.max()) <= 1
    assert not torch.equal(weak, clean), "the weak camera changed the patches"
    again = draw(5)
    assert torch.equal(again[0], weak) and torch.equal(again[1], clean)
    assert not torch.equal(draw(6)[1], clean)


def test_identity_patches_pass_unchanged():
    config = tiny_config(identity_fraction=1.0)
    sampler = WeakCameraSampler(TrainingFrames([], tiny_scenes()), config, np.random.default_rng(0))
    weak, clean = sampler.batch(2)
    assert torch.equal(weak, clean)


def test_sampler_uses_the_configured_faults():
    config = tiny_config(identity_fraction=0.0, faults=NO_FAULTS)
    weak, clean = WeakCameraSampler(TrainingFrames([], tiny_scenes()), config).batch(2)
    torch.testing.assert_close(weak, clean, atol=1e-6, rtol=0)


def test_sampler_takes_real_pairs_when_real_fraction_is_one():
    weak = np.full((40, 48, 3), 0.3, np.float32)
    good = np.full((40, 48, 3), 0.7, np.float32)
    config = tiny_config(real_fraction=1.0)
    sampler = WeakCameraSampler(
        TrainingFrames([], tiny_scenes(), [(weak, good)]), config, np.random.default_rng(0)
    )
    inputs, targets = sampler.batch(2)
    assert torch.equal(inputs, torch.full_like(inputs, 0.3)), "the phone image is the input"
    assert torch.equal(targets, torch.full_like(targets, 0.7)), "the DSLR image is the target"


@pytest.mark.parametrize(
    "overrides",
    [{"patch_size": 8}, {"identity_fraction": 1.5}, {"real_fraction": -0.1}],
)
def test_bad_train_config_is_refused(overrides):
    with pytest.raises(ValueError):
        EnhanceTrainConfig(**overrides)


# --------------------------------------------------------------------------- evaluation


def test_auto_levels_undoes_a_veil_and_a_cast(rng):
    clean = rng.uniform(0.0, 1.0, (32, 32, 3)).astype(np.float32)
    veiled = 0.6 * clean + 0.4 * np.array([0.3, 0.27, 0.24], np.float32)
    restored = auto_levels(veiled, percentile=0.0)
    assert restored.dtype == np.float32
    np.testing.assert_allclose(
        restored, (clean - clean.min((0, 1))) / np.ptp(clean, (0, 1)), atol=1e-5
    )
    flat = np.full((8, 8, 3), 0.5, np.float32)
    assert np.isfinite(auto_levels(flat)).all(), "a flat frame does not divide by zero"


def test_eval_sets_are_the_whole_camera_then_each_fault_alone():
    labels = list(EVAL_FAULTS)
    assert labels[0] == "weak camera (all faults)" and len(labels) == 5
    noise = EVAL_FAULTS["sensor noise only"]
    assert noise.blur_sigma == (0.0, 0.0) and noise.jpeg_fraction == 0.0
    assert noise.read_noise[1] > 0


def test_eval_scores_input_baseline_and_model_on_every_set(tmp_path, run_eval, write_pairs):
    weights = tmp_path / "w.safetensors"
    save_weights(tiny_net().eval(), weights, get_restorer("enhance"), {})
    pairs = write_pairs(tmp_path / "dped", ("iphone", "canon"))
    code, table = run_eval(
        "enhance", weights, "--pairs-dir", pairs, "--json", tmp_path / "eval.json"
    )
    assert code == 0
    for text in (*EVAL_FAULTS, "real pairs: dped"):
        assert text in table
    for method in ("| input |", "| auto levels |", "| enhance |"):
        assert table.count(method) == 6, f"{method} in each of the 6 sets"
    rows = json.loads((tmp_path / "eval.json").read_text())
    harm = [row for row in rows if row["reference"] == "input"]
    assert [(row["label"], row["images"]) for row in harm] == [("scene frames", 4)]
    rows = [row for row in rows if row["reference"] == "clean"]
    assert [row["images"] for row in rows] == [4, 4, 4, 4, 4, 2], "4 test scenes; 2 pairs"
    veil = rows[2]["scores"]
    assert veil["auto levels"]["psnr"][0] != veil["input"]["psnr"][0]


def test_the_metadata_records_the_loss_terms_and_the_weak_camera():
    config = EnhanceTrainConfig()
    loss = RECIPE.loss(config, EnhanceObjective(config, vgg=None))
    assert loss["terms"] == "1 content + 0.4 texture + 0.1 color + 400 tv"
    assert to_mapping(config)["faults"]["jpeg_fraction"] == 0.7
