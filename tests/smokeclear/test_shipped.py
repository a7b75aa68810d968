"""What the package ships per restorer beyond the registry suite (tests/test_restorers.py)."""

from smokeclear.nets.loading import weights_metadata
from smokeclear.registry import REGISTRY


def test_shipped_smooth_weights_record_their_validation_energy():
    assert "val_neg_energy" in weights_metadata(REGISTRY["smooth"].weights)


def test_shipped_desmoke_config_loads():
    from smokeclear.config import load_config
    from smokeclear.nets.desmoke import DesmokeConfig
    from smokeclear.train.desmoke import DesmokeTrainConfig

    spec = REGISTRY["desmoke"]
    assert load_config(DesmokeConfig, spec.default_config, "network").levels == 6
    assert load_config(DesmokeTrainConfig, spec.default_config, "train").patience == 8


def test_shipped_dereflect_configs_load():
    from smokeclear.config import load_config
    from smokeclear.nets.dereflect import DereflectConfig
    from smokeclear.train.dereflect import DereflectTrainConfig

    spec = REGISTRY["dereflect"]
    realtime = load_config(DereflectConfig, spec.default_config, "network")
    paper_file = spec.default_config.with_name("dereflect-paper.yaml")
    paper = load_config(DereflectConfig, paper_file, "network")
    assert paper.width == 32 and paper.iterations == 3 and realtime.width < paper.width
    train = load_config(DereflectTrainConfig, paper_file, "train")
    assert (train.theta, train.ssim_weight, train.laplacian_clip) == (0.85, 0.84, 0.25)
    lambdas = (
        train.composition_weight,
        train.perceptual_weight,
        train.mix_weight,
        train.adversarial_weight,
    )
    assert lambdas == (0.4, 0.2, 0.4, 0.01), "the paper's Eq. 15"


def test_shipped_lowlight_config_keeps_the_papers_loss_weights_and_data():
    from smokeclear.config import load_config
    from smokeclear.nets.lowlight import LowlightConfig
    from smokeclear.train.lowlight import LowlightTrainConfig

    spec = REGISTRY["lowlight"]
    network = load_config(LowlightConfig, spec.default_config, "network")
    assert network.dilation == 2 and network.max_length >= 1920
    train = load_config(LowlightTrainConfig, spec.default_config, "train")
    assert (train.perceptual_weight, train.adversarial_weight) == (0.05, 1e-3), "Eq. 7"
    assert train.gamma_range == (2.0, 4.0) and train.patch_size == 128
    assert train.weight_decay == 1e-5 and train.betas == (0.9, 0.999)


def test_shipped_smooth_config_keeps_the_papers_network_and_energy():
    from smokeclear.config import load_config
    from smokeclear.nets.smooth import PAPER_DILATIONS, SmoothConfig
    from smokeclear.train.smooth import SmoothTrainConfig

    spec = REGISTRY["smooth"]
    network = load_config(SmoothConfig, spec.default_config, "network")
    assert network.dilations == PAPER_DILATIONS
    energy = load_config(SmoothTrainConfig, spec.default_config, "train").energy
    paper = (0.1, 7.0, 1.0, 0.1, 5.0, 20.0, 10.0, 21)
    ours = (
        energy.sigma_color,
        energy.sigma_space,
        energy.flatten_weight,
        energy.edge_weight,
        energy.large_weight,
        energy.c1,
        energy.c2,
        energy.window,
    )
    assert ours == paper, "the paper's Sec. 4 defaults"
    assert (energy.p_large, energy.p_small) == (2.0, 0.8)


def test_enhance_configs_hold_the_papers_and_the_public_codes_loss_weights():
    from smokeclear.config import load_config
    from smokeclear.nets.enhance import EnhanceConfig
    from smokeclear.train.enhance import EnhanceTrainConfig

    spec = REGISTRY["enhance"]

    def weights(train: EnhanceTrainConfig) -> tuple[float, ...]:
        return (
            train.content_weight,
            train.texture_weight,
            train.color_weight,
            train.tv_weight,
            train.pixel_weight,
        )

    shipped = load_config(EnhanceTrainConfig, spec.default_config, "train")
    assert weights(shipped)[:4] == (1.0, 0.4, 0.1, 400.0), "Eq. 8; pixel is ours"
    paper_file = spec.default_config.with_name("enhance-paper.yaml")
    assert load_config(EnhanceConfig, paper_file, "network") == EnhanceConfig(width=64, blocks=4)
    paper = load_config(EnhanceTrainConfig, paper_file, "train")
    assert weights(paper) == (1.0, 0.4, 0.1, 400.0, 0.0)
    assert (paper.patch_size, paper.batch_size, paper.learning_rate) == (100, 50, 5e-4)
    code = load_config(
        EnhanceTrainConfig, spec.default_config.with_name("enhance-dped-code.yaml"), "train"
    )
    # w_content 10, w_color 0.5 on half the norm, w_texture 1 summed over 50, w_tv 2000 / 50
    assert weights(code) == (10.0, 50.0, 0.25, 40.0, 0.0)
