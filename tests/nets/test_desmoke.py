import pytest
import torch

from smokeclear.nets.desmoke import DesmokeConfig, DesmokeNet, regional_dark_channel
from smokeclear.nets.wrappers import run_padded

TINY = DesmokeConfig(width=4, max_channels=16)


@pytest.mark.parametrize(("height", "width"), [(37, 53), (64, 32), (17, 100)])
def test_desmoke_keeps_any_frame_size_when_padded(height, width):
    net = DesmokeNet(TINY).eval()
    with torch.no_grad():
        out = run_padded(net, torch.rand(1, 3, height, width))
    assert out.shape == (1, 3, height, width)


def test_desmoke_architecture_follows_the_paper():
    net = DesmokeNet(DesmokeConfig())
    assert net.input_multiple == 32, "six levels = five downsamplings"
    assert len(net.encoder) == 6 and len(net.decoder) == 5 and len(net.upsample) == 5
    assert net.detail_levels == (1, 2, 3, 4), "D2..D5 enter encoder levels 2..5"
    encoder_depth = len(net.encoder[1])
    decoder_depth = len(net.decoder[0])
    assert decoder_depth > encoder_depth, "the decoder is deeper than the encoder"
    # Level 2 takes the pooled level-1 features plus the 3-channel detail layer.
    assert net.encoder[1][0][0].in_channels == 8 + 3
    assert not any(isinstance(m, torch.nn.MaxPool2d) and m.return_indices for m in net.modules())


def test_desmoke_rejects_bad_input():
    net = DesmokeNet(TINY)
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 40, 64))
    with pytest.raises(ValueError, match="RGB"):
        net(torch.rand(1, 1, 64, 64))


def test_desmoke_trains():
    torch.manual_seed(0)
    net = DesmokeNet(TINY)
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    image = torch.rand(2, 3, 32, 32)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.mse_loss(net(image), image)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2, f"loss should fall when fitting one batch: {losses}"


@pytest.mark.parametrize("field", ["width", "levels", "encoder_convs"])
def test_config_validation(field):
    with pytest.raises(ValueError):
        DesmokeConfig(**{field: 0})


def test_the_smoke_gate_scales_the_correction_and_can_pass_the_input_through():
    torch.manual_seed(0)
    plain = DesmokeNet(DesmokeConfig(width=2, max_channels=4, levels=3)).eval()
    gated = DesmokeNet(DesmokeConfig(width=2, max_channels=4, levels=3, smoke_gate=True)).eval()
    gated.load_state_dict({**gated.state_dict(), **plain.state_dict()})
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        correction = plain(image) - image
        assert correction.abs().max() > 1e-3, "the tiny net changes the frame"
        gated.open_gate(bias=50.0)  # g = 1: the plain net
        torch.testing.assert_close(gated(image), plain(image), atol=1e-6, rtol=0)
        gated.open_gate(bias=0.0)  # g = 0.5
        torch.testing.assert_close(gated(image) - image, 0.5 * correction, atol=1e-6, rtol=0)
        gated.open_gate(bias=-50.0)  # g = 0: the input itself
        torch.testing.assert_close(gated(image), image, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="no smoke gate"):
        plain.open_gate()


def test_the_regional_dark_channel_is_the_darkest_colour_of_block_means():
    image = torch.empty(1, 3, 32, 48)
    image[:, 0], image[:, 1], image[:, 2] = 0.8, 0.3, 0.15
    dark = regional_dark_channel(image)
    assert dark.shape == (1, 1, 32, 48) and dark.dtype == torch.float32
    torch.testing.assert_close(dark, torch.full_like(dark, 0.15))
    noisy = image + 0.05 * torch.randn_like(image)  # pixel noise averages out in 8x8 blocks
    assert (regional_dark_channel(noisy) - 0.15).abs().max() < 0.03


def test_the_density_gate_passes_clean_tissue_and_corrects_where_smoke_lifts_the_dark_channel():
    torch.manual_seed(0)
    config = DesmokeConfig(width=2, max_channels=4, levels=3, pass_through_density=(0.1, 0.2))
    gated = DesmokeNet(config).eval()
    plain = DesmokeNet(
        DesmokeConfig(width=2, max_channels=4, levels=3, pass_through_density=(0, 0))
    )
    plain.load_state_dict(gated.state_dict())
    plain.eval()
    assert gated.input_multiple == 8 and plain.input_multiple == 4
    tissue = torch.tensor([0.75, 0.3, 0.05]).view(1, 3, 1, 1)  # red tissue: dark channel 0.05
    smoke = torch.tensor([0.8, 0.75, 0.7]).view(1, 3, 1, 1)  # grey haze: dark channel 0.7
    image = torch.cat([tissue.expand(1, 3, 64, 32), smoke.expand(1, 3, 64, 32)], dim=3)
    with torch.no_grad():
        out, ungated = gated(image), plain(image)
        assert (ungated - image).abs().amax(dim=(0, 1, 2)).min() > 1e-3, "the tiny net changes it"
        # away from the border the regional estimate blurs over, each side is exact
        torch.testing.assert_close(out[..., :16], image[..., :16], atol=0, rtol=0)
        torch.testing.assert_close(out[..., 48:], ungated[..., 48:], atol=1e-6, rtol=0)
        halfway = torch.tensor([0.6, 0.5, 0.15]).view(1, 3, 1, 1)
        frame = halfway.expand(1, 3, 32, 32)  # dark channel 0.15: half the correction
        torch.testing.assert_close(
            gated(frame) - frame, 0.5 * (plain(frame) - frame), atol=1e-6, rtol=0
        )


def test_a_backwards_density_gate_is_refused():
    with pytest.raises(ValueError, match="pass_through_density"):
        DesmokeConfig(pass_through_density=(0.3, 0.2))
