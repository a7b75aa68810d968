import ast
import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch
from torch import nn

from smokeclear.config import load_config
from smokeclear.nets.loading import save_weights
from smokeclear.nets.lowlight import LowlightConfig, LowlightNet
from smokeclear.registry import get_restorer
from smokeclear.synthetic.lowlight import darken, srgb_decode
from smokeclear.train import driver, evaluation, lowlight
from smokeclear.train.evaluation import EvalRow
from smokeclear.train.losses import generator_loss
from smokeclear.train.lowlight import (
    METRICS,
    WELL_EXPOSED_LUMA,
    DarkSampler,
    Discriminator,
    LowlightObjective,
    LowlightTrainConfig,
    clahe,
    darken_for_training,
    draw_capture,
    gamma_inverse,
    mean_luma,
    perceptual_mse,
)
from smokeclear.train.metrics import hsv_mse
from smokeclear.train.recipe import TrainingFrames


def tiny_net(**overrides) -> LowlightNet:
    torch.manual_seed(0)
    settings = {"width": 2, "edge_width": 2, "scale_channels": 1, **overrides}
    return LowlightNet(LowlightConfig(**settings))


def tiny_scenes():
    return lowlight.data.scenes_for("train", 96, 64)[:1]


# --------------------------------------------------------------------------- discriminator


def test_discriminator_follows_table_1():
    discriminator = Discriminator(32)
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 10
    assert [c.out_channels for c in convs] == [32, 64, 64, 128, 128, 256, 256, 512, 512, 1]
    assert [(c.kernel_size[0], c.stride[0]) for c in convs] == [(5, 2), (3, 1)] * 4 + [
        (5, 2),
        (4, 1),
    ]
    assert convs[-1].padding == (0, 0), "the last 4x4 conv is unpadded: one score per 128 px"
    leaky = [m for m in discriminator.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 9, "LeakyReLU after every conv but the last"
    with torch.no_grad():
        assert discriminator(torch.rand(2, 3, 128, 128)).shape == (2, 1, 1, 1)
        assert discriminator(torch.rand(1, 3, 256, 256)).shape == (1, 1, 5, 5)


def test_discriminator_width_scales_every_channel_count():
    convs = [m for m in Discriminator(2).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2, 4, 4, 8, 8, 16, 16, 32, 32, 1]


@pytest.mark.parametrize("patch_size", [32, 64, 96, 144])
def test_patches_the_discriminator_cannot_score_are_refused_up_front(patch_size):
    with pytest.raises(ValueError, match="at least 128"):
        LowlightTrainConfig(patch_size=patch_size, discriminator_width=2)
    # Without the adversarial term any multiple of 8 trains.
    config = LowlightTrainConfig(patch_size=patch_size, adversarial_weight=0)
    batch = (torch.rand(2, 3, patch_size, patch_size), torch.rand(2, 3, patch_size, patch_size))
    assert torch.isfinite(LowlightObjective(config, vgg=None)(tiny_net(), batch))


def test_perceptual_mse_is_zero_for_identical_images_and_positive_otherwise(conv_features):
    features = conv_features("conv", "relu")
    image = torch.rand(2, 3, 16, 16)
    assert perceptual_mse(features, image, image).item() == 0.0
    output = (image + 0.1).clamp(0, 1).requires_grad_(True)
    loss = perceptual_mse(features, output, image)
    assert loss.item() > 0
    pairs = zip(features(output), features(image), strict=True)
    expected = [nn.functional.mse_loss(a, b) for a, b in pairs]
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)
    loss.backward()
    assert output.grad is not None and output.grad.abs().sum() > 0, "trains the generator"


# --------------------------------------------------------------------------- objective


def test_objective_steps_the_discriminator_and_adds_its_weighted_term(stepped):
    config = LowlightTrainConfig(adversarial_weight=1e-3, discriminator_width=2)
    objective = LowlightObjective(config, vgg=None)
    net = tiny_net()
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 128, 128, generator=generator)
    dark = clean**3
    loss = stepped(objective, net, (dark, clean))

    terms = objective.last_terms
    assert set(terms) == {"mse", "adversarial"}
    with torch.no_grad():
        output = net(dark)
        assert terms["mse"] == pytest.approx(nn.functional.mse_loss(output, clean).item())
        adversarial = generator_loss(objective.adversary.discriminator(output)).item()
    assert terms["adversarial"] == pytest.approx(adversarial, rel=1e-5), "after D's step"
    assert loss.item() == pytest.approx(terms["mse"] + 1e-3 * terms["adversarial"], rel=1e-6)

    discriminator_grads = [p.grad.clone() for p in objective.adversary.discriminator.parameters()]
    loss.backward()
    for grad, parameter in zip(
        discriminator_grads, objective.adversary.discriminator.parameters(), strict=True
    ):
        assert torch.equal(grad, parameter.grad), "the generator's loss must not train D"
    assert net.to_gates.weight.grad is not None


def test_objective_adds_the_perceptual_term_with_weight_0_05(conv_features):
    config = LowlightTrainConfig(adversarial_weight=0)
    objective = LowlightObjective(config, vgg=conv_features("conv", "relu"))
    clean = torch.rand(1, 3, 32, 32)
    loss = objective(tiny_net(), (clean**3, clean))
    terms = objective.last_terms
    assert set(terms) == {"mse", "perceptual"} and terms["perceptual"] > 0
    assert loss.item() == pytest.approx(terms["mse"] + 0.05 * terms["perceptual"], rel=1e-6)


def test_objective_state_round_trips(restored):
    config = LowlightTrainConfig(discriminator_width=2)
    objective = LowlightObjective(config, vgg=None)
    clean = torch.rand(1, 3, 128, 128)
    objective(tiny_net(), (clean**3, clean))
    assert set(objective.state_dict()) == {"discriminator", "discriminator_optimizer"}

    other = restored(objective, lambda: LowlightObjective(config, vgg=None))
    moments = other.adversary.optimizer.state_dict()["state"]
    assert moments, "the optimizer's moments come back too"
    assert moments[0]["step"] == objective.adversary.optimizer.state_dict()["state"][0]["step"]


def test_without_adversarial_weight_there_is_no_discriminator():
    objective = LowlightObjective(LowlightTrainConfig(adversarial_weight=0), vgg=None)
    assert objective.adversary is None
    assert objective.state_dict() == {}
    objective.load_state_dict({})
    clean = torch.rand(1, 3, 32, 32)
    net = tiny_net()
    loss = objective(net, (clean**3, clean))
    assert set(objective.last_terms) == {"mse"}
    with torch.no_grad():
        assert loss.item() == pytest.approx(nn.functional.mse_loss(net(clean**3), clean).item())


# --------------------------------------------------------------------------- data


def clean_patch(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.9, (32, 32, 3)).astype(np.float32)


def estimated_gamma(dark: np.ndarray, clean: np.ndarray) -> np.ndarray:
    return np.log(dark.astype(np.float64)) / np.log(clean.astype(np.float64))


def only(**fractions) -> LowlightTrainConfig:
    """A config whose draws all take one branch (the fractions not given are 0)."""
    settings = {"identity_fraction": 0.0, "local_fraction": 0.0, "camera_fraction": 0.0}
    return LowlightTrainConfig(**{**settings, **fractions})


def test_identity_draws_keep_the_patch_and_their_target_is_the_input():
    clean = clean_patch()
    noisy = dataclasses.replace(only(identity_fraction=1.0), identity_noise_max=0.01)
    kept_noise = 0
    for seed in range(12):
        dark, target = darken_for_training(clean, noisy, np.random.default_rng(seed))
        np.testing.assert_array_equal(dark, target, err_msg="a well-exposed input is its target")
        residual = dark - clean
        assert abs(residual.mean()) < 3e-3 and residual.std() <= 0.0105, "slight noise at most"
        kept_noise += residual.std() > 1e-4
    assert 2 <= kept_noise <= 10, f"about half the identity draws are noisy, got {kept_noise}/12"
    quiet = dataclasses.replace(noisy, identity_noise_max=0.0)
    dark, target = darken_for_training(clean, quiet, np.random.default_rng(0))
    np.testing.assert_array_equal(dark, clean)


def test_local_darkening_varies_across_the_patch():
    clean = clean_patch()
    config = dataclasses.replace(only(local_fraction=1.0), noise_max=0.0, gamma_range=(3.0, 3.5))
    for seed in range(5):
        dark, target = darken_for_training(clean, config, np.random.default_rng(seed))
        assert target is clean
        gamma = estimated_gamma(dark, clean)
        assert gamma.min() >= 1.0 - 1e-4 and gamma.max() <= 3.5 + 1e-4
        assert gamma.max() - gamma.min() > 0.5, "a gamma field, not one gamma"


def test_global_darkening_is_one_gamma_in_the_configured_range():
    clean = clean_patch()
    config = dataclasses.replace(only(), noise_max=0.0, gamma_range=(2.5, 3.0))
    gammas = []
    for seed in range(20):
        dark, _ = darken_for_training(clean, config, np.random.default_rng(seed))
        gamma = estimated_gamma(dark, clean)
        assert gamma.max() - gamma.min() < 1e-3, "one gamma for the whole patch"
        gammas.append(float(gamma.mean()))
    assert min(gammas) >= 2.5 - 1e-4 and max(gammas) <= 3.0 + 1e-4, gammas
    assert max(gammas) - min(gammas) > 0.2, f"gamma should be drawn from the range: {gammas}"


def test_camera_draws_darken_in_linear_light_within_the_exposure_range():
    clean = clean_patch()
    config = dataclasses.replace(only(camera_fraction=1.0), exposure_range=(4.0, 8.0))
    ratios = []
    for seed in range(16):
        dark, target = darken_for_training(clean, config, np.random.default_rng(seed))
        assert target is clean and dark.shape == clean.shape and dark.dtype == np.float32
        # Every training CRF is close to sRGB, so the light kept is near 1 / k.
        kept = srgb_decode(dark).mean() / srgb_decode(clean).mean()
        ratios.append(kept)
    assert all(1 / 16 < r < 1 / 2.5 for r in ratios), f"light kept: {np.round(ratios, 3)}"
    assert max(ratios) / min(ratios) > 1.2, "the exposure is drawn, not fixed"


def test_draw_capture_mixes_the_camera_effects():
    config = LowlightTrainConfig()
    draws = [draw_capture(16, 24, config, np.random.default_rng(seed)) for seed in range(60)]
    assert {d.curve.name for d in draws} >= {"gamma 2.20", "sRGB", "Rec. 709"}
    assert len({d.curve.name for d in draws}) > 4, "power laws with drawn gammas too"
    exposures = [d.exposure for d in draws]
    assert min(exposures) >= 2.0 and max(exposures) <= 16.0
    for has, what in [
        (lambda d: d.vignette is not None, "vignetting"),
        (lambda d: d.gains != (1.0, 1.0, 1.0), "a colour cast"),
        (lambda d: d.shot_noise > 0, "sensor noise"),
        (lambda d: d.chroma_noise > 0, "colour noise"),
    ]:
        share = np.mean([has(d) for d in draws])
        assert 0.1 < share < 1.0, f"{what} in {share:.0%} of the draws: should be mixed"
    for d in draws:
        assert all(np.exp(-0.25) - 1e-6 <= g <= np.exp(0.25) + 1e-6 for g in d.gains)
        if d.vignette is not None:
            assert d.vignette.shape == (16, 24) and d.vignette.min() >= 1 - 0.6 - 1e-6


def test_the_default_mix_keeps_the_identity_share_for_well_exposed_patches():
    config = LowlightTrainConfig()
    clean = clean_patch()  # mean luma about 0.55: well exposed
    identity = sum(
        np.array_equal(*darken_for_training(clean, config, np.random.default_rng(seed)))
        for seed in range(200)
    )
    assert 0.25 < identity / 200 < 0.45, f"identity share {identity / 200:.0%}, configured 35 %"


def test_a_dark_patch_is_never_an_identity_patch():
    dark_clean = clean_patch() * 0.3  # mean luma about 0.17: under-exposed
    config = only(identity_fraction=1.0)
    for seed in range(10):
        dark, target = darken_for_training(dark_clean, config, np.random.default_rng(seed))
        assert target is dark_clean and mean_luma(dark) < mean_luma(dark_clean)


def test_darkened_patches_come_out_under_exposed():
    bright = np.random.default_rng(0).uniform(0.35, 0.8, (32, 32, 3)).astype(np.float32)
    config = dataclasses.replace(only(), gamma_range=(2.0, 4.0), noise_max=0.0)
    lumas = [
        mean_luma(darken_for_training(bright, config, np.random.default_rng(s))[0])
        for s in range(40)
    ]
    # A gamma of 2 leaves this patch at mean luma ~0.35; a gamma above ~2.8 takes it
    # below the well-exposed bound of 0.25. Redrawn up to 3 times, nearly all end there.
    share = np.mean(np.array(lumas) < WELL_EXPOSED_LUMA[0])
    assert share > 0.85, f"only {share:.0%} under-exposed"
    single = [
        mean_luma(darken(bright, float(g), 0.0, np.random.default_rng(0)))
        for g in np.random.default_rng(1).uniform(2.0, 4.0, 40)
    ]
    assert share > np.mean(np.array(single) < 0.25) + 0.1, "the redraw must help"


def test_training_never_uses_the_held_out_camera(monkeypatch):
    from smokeclear.synthetic import lowlight_heldout

    def refuse(*args, **kwargs):
        raise AssertionError("training drew from the held-out camera")

    for name in ("heldout_darken", "heldout_curve", "cos4_vignette", "banded_noise"):
        monkeypatch.setattr(lowlight_heldout, name, refuse)
    config = LowlightTrainConfig(patch_size=32, adversarial_weight=0)
    sampler = DarkSampler(TrainingFrames([], tiny_scenes()), config, np.random.default_rng(0))
    for _ in range(3):
        sampler.batch(8)
    # Nor does it import it: of the training code only evaluate() does, inside the function.
    assert not any("heldout" in name for name in imported(lowlight, top_level_only=True))
    synthesis = inspect.getmodule(darken_for_training.__globals__["capture"])
    for module in (lowlight.data, synthesis):
        assert not any("heldout" in name for name in imported(module)), module.__name__


def imported(module, top_level_only: bool = False) -> list[str]:
    """The modules ``module``'s source imports (at its top level, or anywhere)."""
    tree = ast.parse(inspect.getsource(module))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            names += [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_the_default_config_rescales_crops_to_the_runtime_work_scales():
    config = load_config(LowlightTrainConfig, get_restorer("lowlight").default_config, "train")
    assert config.scale_range == (0.5, 1.0)
    assert config.identity_fraction == 0.35 and config.camera_fraction == 0.3


def test_sampler_batches_are_in_range_deterministic_and_darker():
    config = LowlightTrainConfig(patch_size=32, adversarial_weight=0)
    scenes = tiny_scenes()

    def draw(seed):
        return DarkSampler(TrainingFrames([], scenes), config, np.random.default_rng(seed)).batch(6)

    dark, clean = draw(5)
    assert dark.shape == clean.shape == (6, 3, 32, 32)
    assert dark.dtype == clean.dtype == torch.float32
    for batch in (dark, clean):
        assert batch.min() >= 0 and batch.max() <= 1
    first, second = draw(5), draw(5)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(draw(6)[0], dark)
    assert dark.mean() < clean.mean() * 0.8, "darkened on average"


def test_sampler_takes_real_pairs_when_real_fraction_is_one():
    low = np.full((40, 48, 3), 0.1, np.float32)
    high = np.full((40, 48, 3), 0.8, np.float32)
    config = LowlightTrainConfig(patch_size=32, adversarial_weight=0, real_fraction=1.0)
    sampler = DarkSampler(
        TrainingFrames([], tiny_scenes(), [(low, high)]), config, np.random.default_rng(0)
    )
    dark, clean = sampler.batch(3)
    assert dark.shape == (3, 3, 32, 32)
    assert torch.equal(dark, torch.full_like(dark, 0.1)), "the low image is the input"
    assert torch.equal(clean, torch.full_like(clean, 0.8)), "the high image is the target"
    never = LowlightTrainConfig(patch_size=32, adversarial_weight=0, real_fraction=0.0)
    sampler = DarkSampler(
        TrainingFrames([], tiny_scenes(), [(low, high)]), never, np.random.default_rng(0)
    )
    assert not torch.equal(sampler.batch(2)[1], torch.full((2, 3, 32, 32), 0.8))


def test_sampler_takes_photos_when_scene_fraction_is_zero():
    photo = np.full((48, 48, 3), 0.6, np.float32)
    config = LowlightTrainConfig(
        patch_size=32, adversarial_weight=0, scene_fraction=0.0, identity_fraction=0.0
    )
    _, clean = DarkSampler(
        TrainingFrames([photo], tiny_scenes()), config, np.random.default_rng(0)
    ).batch(2)
    torch.testing.assert_close(clean, torch.full_like(clean, 0.6))  # rescaling rounds


@pytest.mark.parametrize(
    "overrides",
    [
        {"patch_size": 44, "adversarial_weight": 0},
        {"patch_size": 0, "adversarial_weight": 0},
        {"gamma_range": (0.5, 2.0)},
        {"gamma_range": (3.0, 2.0)},
        {"local_fraction": 0.6, "identity_fraction": 0.5},
        {"camera_fraction": 0.7, "identity_fraction": 0.4},
        {"exposure_range": (8.0, 2.0)},
        {"shot_noise_range": (0.0, 1e-3)},
    ],
)
def test_bad_train_config_is_refused(overrides):
    with pytest.raises(ValueError):
        LowlightTrainConfig(**overrides)


# --------------------------------------------------------------------------- evaluation


def test_gamma_inverse_undoes_the_protocols_darkening(rng):
    clean = rng.random((32, 32, 3), dtype=np.float32)
    restored = gamma_inverse(darken(clean, 3.0, 0.0, rng))
    assert restored.shape == clean.shape
    np.testing.assert_allclose(restored, clean, atol=1e-4)
    np.testing.assert_allclose(gamma_inverse(clean**2, gamma=2.0), clean, atol=1e-4)


def test_clahe_raises_the_contrast_of_a_dark_flat_image():
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32)
    dark = 0.08 + 0.03 * np.sin(xs / 5.0)[..., None] * np.cos(ys / 7.0)[..., None]
    dark = np.repeat(dark, 3, axis=2).astype(np.float32)
    equalised = clahe(dark)
    assert equalised.shape == dark.shape and equalised.dtype == np.float32
    assert equalised.min() >= 0 and equalised.max() <= 1
    assert equalised.std() > 1.5 * dark.std(), f"{dark.std():.4f} -> {equalised.std():.4f}"


def test_metrics_are_psnr_ssim_and_the_hsv_errors(rng):
    assert set(METRICS) == {"psnr", "ssim", "mse_hsv", "mse_h", "mse_s", "mse_v"}
    reference = rng.random((16, 16, 3)).astype(np.float32)
    test = np.clip(reference + 0.1 * rng.standard_normal(reference.shape), 0, 1)
    errors = hsv_mse(reference, test)
    for channel in ("hsv", "h", "s", "v"):
        assert METRICS[f"mse_{channel}"](reference, test) == pytest.approx(errors[channel]), (
            f"mse_{channel} must score its own channel"
        )
    assert len({METRICS[f"mse_{c}"](reference, test) for c in ("hsv", "h", "s", "v")}) == 4


def test_format_table_has_a_block_per_set_and_a_row_per_method(rng):
    clean = [rng.uniform(0.2, 0.9, (32, 32, 3)).astype(np.float32) for _ in range(2)]
    cases = [(c, darken(c, 3.0, 0.01, rng)) for c in clean]
    methods = {"input": lambda dark: dark, "gamma inverse": gamma_inverse}
    rows = [
        evaluation.score("paper protocol", cases, methods, METRICS),
        EvalRow("by hand", 1, {m: {k: (1.0, 0.5) for k in METRICS} for m in methods}),
    ]
    assert set(rows[0].scores["input"]) == set(METRICS)
    assert rows[0].scores["gamma inverse"]["psnr"][0] > rows[0].scores["input"]["psnr"][0]
    table = driver.format_table(get_restorer("lowlight"), rows)
    lines = table.splitlines()
    assert "paper protocol (2 images)" in lines and "by hand (1 images)" in lines
    headers = [line for line in lines if line.startswith("| method |")]
    assert len(headers) == 2, "one table per data set"
    for title in ("PSNR (dB)", "SSIM", "mse_hsv", "mse_h", "mse_s", "mse_v"):
        assert title in headers[0]
    assert sum(line.startswith("| input |") for line in lines) == 2
    assert sum(line.startswith("| gamma inverse |") for line in lines) == 2
    assert "| input | 1.00 ± 0.50 | 1.000 ± 0.500 | 1 ± 0.5 |" in table


# --------------------------------------------------------------------------- CLI


def test_eval_scores_input_baselines_and_model_on_every_set(tmp_path, run_eval, write_pairs):
    net = tiny_net().eval()
    weights = tmp_path / "w.safetensors"
    save_weights(net, weights, get_restorer("lowlight"), {})
    pairs = write_pairs(tmp_path / "lol", ("low", "high"))
    code, table = run_eval(
        "lowlight", weights, "--pairs-dir", pairs, "--json", tmp_path / "eval.json"
    )
    assert code == 0
    for text in (
        "paper protocol",
        "dark cavities",
        "held-out camera: 1/4 of the light",
        "held-out camera: 1/12 of the light",
        "real pairs: lol",
    ):
        assert text in table
    for method in ("| input |", "| gamma inverse |", "| CLAHE |", "| lowlight |"):
        assert table.count(method) == 5, f"{method} in each of the 5 sets"
    rows = json.loads((tmp_path / "eval.json").read_text())
    harm = [row for row in rows if row["reference"] == "input"]
    assert [(row["label"], row["images"]) for row in harm] == [("scene frames", 4)]
    assert set(harm[0]["scores"]["lowlight"]) == {"psnr", "ssim", "ciede2000"}
    rows = [row for row in rows if row["reference"] == "clean"]
    assert [row["images"] for row in rows] == [4, 4, 4, 4, 2], "4 test scenes x 1 frame; 2 pairs"
    for row in rows:
        assert set(row["scores"]) == {"input", "gamma inverse", "CLAHE", "lowlight"}
        for scores in row["scores"].values():
            assert set(scores) == {"psnr", "ssim", "mse_hsv", "mse_h", "mse_s", "mse_v"}
    protocol = rows[0]["scores"]
    assert protocol["gamma inverse"]["psnr"][0] > protocol["input"]["psnr"][0]
