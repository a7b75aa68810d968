import cv2
import numpy as np
import pytest
import torch

from smokeclear.nets.dereflect import DereflectConfig, DereflectNet, IterationOutput
from smokeclear.nets.loading import save_weights
from smokeclear.registry import get_restorer
from smokeclear.train import dereflect
from smokeclear.train.dereflect import (
    DereflectObjective,
    DereflectTrainConfig,
    ReflectionBatch,
    ReflectionSampler,
    composition_loss,
    mix_loss,
)
from smokeclear.train.loop import Schedule, fit
from smokeclear.train.recipe import TrainingFrames


def output(transmission, reflection, confidence) -> IterationOutput:
    return IterationOutput(transmission, reflection, confidence, None, None, None, None)


def test_composition_loss_is_zero_for_the_true_layers_and_grows_with_error():
    torch.manual_seed(0)
    transmission = torch.rand(2, 3, 8, 8) * 0.5
    reflection = torch.rand(2, 3, 8, 8) * 0.3
    blended = transmission + reflection  # Eq. 6 with alpha 1 and gamma 1
    alpha = torch.ones(2)
    no_reflection_mask = torch.zeros(2, 1, 8, 8)
    perfect = [output(transmission, reflection, no_reflection_mask)] * 2
    loss = composition_loss(perfect, blended, transmission, reflection, alpha, [0.85, 1], 1.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    wrong = [output(transmission + 0.1, reflection, no_reflection_mask)] * 2
    worse = composition_loss(wrong, blended, transmission, reflection, alpha, [0.85, 1], 1.0)
    # Only the L_res term with the predicted T changes: MSE 0.01, weighted 0.85 + 1.
    assert worse.item() == pytest.approx(0.01 * 1.85, rel=1e-4)


def test_composition_loss_rewards_the_confidence_map_where_the_reflection_is():
    transmission = torch.full((1, 3, 4, 4), 0.5)
    reflection = torch.zeros(1, 3, 4, 4)
    reflection[..., :2, :] = 0.5
    blended = torch.where(reflection > 0, reflection, transmission)  # R replaces T there
    located = torch.zeros(1, 1, 4, 4)
    located[..., :2, :] = 1.0
    args = (blended, transmission, reflection, torch.ones(1), [1.0])
    right = composition_loss([output(transmission, reflection, located)], *args, gamma=1.0)
    blind = composition_loss([output(transmission, reflection, 0 * located)], *args, gamma=1.0)
    assert right < blind, "W = 1 - C must mask the transmission under the reflection"


def test_mix_loss_follows_eq_13():
    target = torch.rand(1, 3, 16, 16)
    assert mix_loss([target], target, [1.0], 0.84).item() == pytest.approx(0.0, abs=1e-6)
    shifted = (target + 0.1).clamp(0, 1)
    l1 = (shifted - target).abs().mean().item()
    pixel_only = mix_loss([shifted], target, [1.0], 0.0).item()
    assert pixel_only == pytest.approx(l1, rel=1e-5)
    weighted = mix_loss([shifted, shifted], target, [0.85, 1.0], 0.0).item()
    assert weighted == pytest.approx(1.85 * l1, rel=1e-5), "iterations weighted theta^(N-i)"


def test_sampler_batches_are_in_range_deterministic_and_follow_eq_6():
    config = DereflectTrainConfig(patch_size=32, alpha_range=(0.8, 1.0), identity_fraction=0.0)
    scenes = dereflect.data.scenes_for("train", 96, 64)[:1]

    def draw(seed):
        return ReflectionSampler(
            TrainingFrames([], scenes), config, np.random.default_rng(seed)
        ).batch(3)

    batch = draw(5)
    assert batch.blended.shape == batch.transmission.shape == batch.reflection.shape
    assert batch.blended.shape == (3, 3, 32, 32) and batch.alpha.shape == (3,)
    assert batch.blended.min() >= 0 and batch.blended.max() <= 1
    assert ((batch.alpha >= 0.8) & (batch.alpha <= 1)).all()
    assert torch.equal(draw(5).blended, batch.blended)
    linear = batch.transmission**2.2 * batch.alpha.view(-1, 1, 1, 1) + batch.reflection**2.2
    torch.testing.assert_close(batch.blended**2.2, linear.clamp(max=1), atol=2e-2, rtol=0)


def test_identity_patches_have_nothing_to_remove():
    config = DereflectTrainConfig(patch_size=32, identity_fraction=1.0)
    scenes = dereflect.data.scenes_for("train", 96, 64)[:1]
    batch = ReflectionSampler(TrainingFrames([], scenes), config, np.random.default_rng(0)).batch(3)
    assert torch.equal(batch.blended, batch.transmission)
    assert batch.reflection.abs().max() == 0 and (batch.alpha == 1).all()


def test_scene_highlight_pairs_are_exact_eq_6_pairs():
    scene = dereflect.data.scenes_for("test", 96, 64)[0]
    blended, transmission, reflection, alpha = dereflect.scene_highlight_pair(scene, 40)
    assert alpha == 1.0 and (blended >= transmission - 1e-6).all()
    np.testing.assert_allclose(
        blended**2.2, np.minimum(transmission**2.2 + reflection**2.2, 1), atol=1e-5
    )


def test_objective_steps_the_discriminator_and_clips_the_laplacian_gradient(stepped, restored):
    torch.manual_seed(0)
    net = DereflectNet(DereflectConfig(width=2, se_blocks=1, iterations=2))
    config = DereflectTrainConfig(laplacian_clip=1e-3, discriminator_width=4)
    objective = DereflectObjective(config, vgg=None)
    scenes = dereflect.data.scenes_for("train", 96, 64)[:1]
    sampler = ReflectionSampler(TrainingFrames([], scenes), DereflectTrainConfig(32))
    loss = stepped(objective, net, sampler.batch(2))
    loss.backward()
    objective.after_backward(net)
    assert set(objective.last_terms) == {"mix", "composition", "adversarial"}
    assert net.step.laplacian.kernel.grad.norm() <= 1e-3 + 1e-9
    restored(objective, lambda: DereflectObjective(config, vgg=None))


def test_real_batches_skip_the_composition_term():
    net = DereflectNet(DereflectConfig(width=2, se_blocks=1, iterations=1))
    objective = DereflectObjective(DereflectTrainConfig(adversarial_weight=0), vgg=None)
    real = ReflectionBatch(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), None, None)
    objective(net, real)
    assert set(objective.last_terms) == {"mix"}


def test_fit_takes_a_loss_or_an_objective_not_both(tmp_path):
    net = DereflectNet(DereflectConfig(width=2, se_blocks=1, iterations=1))
    with pytest.raises(ValueError, match="exactly one"):
        fit(
            net,
            get_restorer("dereflect"),
            batches_for_epoch=lambda epoch: None,
            validation=(torch.rand(1, 3, 8, 8),) * 2,
            schedule=Schedule(1e-3, 1, 1, 1, 0.0),
            out_dir=tmp_path,
            metadata={},
        )


def test_eval_scores_input_baseline_and_model_on_every_set(tmp_path, run_eval, write_pairs):
    net = DereflectNet(DereflectConfig(width=2, se_blocks=1, iterations=1)).eval()
    weights = tmp_path / "w.safetensors"
    save_weights(net, weights, get_restorer("dereflect"), {})
    pairs = write_pairs(tmp_path / "pairs", ("blended", "transmission"))
    code, table = run_eval(
        "dereflect",
        weights,
        "--pairs-dir",
        pairs,
        "--json",
        tmp_path / "eval.json",
        "--examples",
        tmp_path / "examples.png",
    )
    assert code == 0
    grid = cv2.imread(str(tmp_path / "examples.png"))
    assert grid.shape == (3 * 288, 4 * 512, 3), "3 data sets x (3 methods + clean), scene size"
    for label in ("synthetic reflections", "scene highlights", "real pairs: pairs"):
        assert label in table
    assert "inpaint PSNR" in table and "dereflect SSIM" in table


def test_eval_on_the_val_split_with_a_setting_says_so(tmp_path, run_eval):
    net = DereflectNet(DereflectConfig(width=2, se_blocks=1, iterations=1)).eval()
    weights = tmp_path / "w.safetensors"
    save_weights(net, weights, get_restorer("dereflect"), {})
    closed = [
        "--split",
        "val",
        "--set",
        "pass_through_whiteness=[1, 1.0]",
        "--set",
        "whiteness_radius=0",
    ]
    code, table = run_eval("dereflect", weights, *closed)
    assert code == 0 and table.startswith("val split (for tuning; report the test split)")
    assert "| scene frames | 2 | 58.92" not in table, "[1, 1]: equal values, the gate is off"
    code, table = run_eval(
        "dereflect", weights, "--split", "val", "--set", "pass_through_whiteness=[0.99, 1.0]"
    )
    assert code == 0 and "| scene frames | 2 | 58.92 ± 0.00 |" in table, "closed: input unchanged"


def test_inpaint_baseline_fills_saturated_spots():
    image = np.full((32, 32, 3), 0.4, np.float32)
    image[14:18, 14:18] = 1.0
    filled = dereflect.inpaint_highlights(image)
    assert abs(filled[16, 16] - 0.4).max() < 0.05
