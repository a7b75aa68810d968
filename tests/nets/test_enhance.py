"""enhance network: the DPED generator's layout, instance norm and scaled tanh output."""

import pytest
import torch
from torch import nn

from smokeclear.nets.enhance import NORM_EPS, TANH_SCALE, EnhanceConfig, EnhanceNet


def tiny_net(width: int = 4, blocks: int = 2) -> EnhanceNet:
    torch.manual_seed(0)
    return EnhanceNet(EnhanceConfig(width=width, blocks=blocks)).eval()


def test_paper_layout_nine_convs_plus_two_per_block_all_width_64():
    net = EnhanceNet()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 4 * 2 + 2 + 1
    assert [c.kernel_size for c in (convs[0], convs[-1])] == [(9, 9), (9, 9)]
    assert all(c.kernel_size == (3, 3) for c in convs[1:-1])
    assert all(c.stride == (1, 1) for c in convs)
    assert convs[0].in_channels == 3 and convs[-1].out_channels == 3
    assert all(c.out_channels == 64 for c in convs[:-1])
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 8 and all(n.eps == NORM_EPS == 1e-3 and n.affine for n in norms)


def test_paper_parameter_count():
    width, conv3 = 64, 64 * 64 * 9 + 64
    expected = (
        (3 * width * 81 + width) + 8 * conv3 + 8 * 2 * width + 2 * conv3 + (width * 3 * 81 + 3)
    )
    assert sum(p.numel() for p in EnhanceNet().parameters()) == expected


@pytest.mark.parametrize(("height", "width"), [(17, 23), (32, 32), (9, 40)])
def test_any_size_keeps_its_shape(height, width):
    image = torch.rand(2, 3, height, width)
    with torch.no_grad():
        assert tiny_net()(image).shape == image.shape


def test_output_is_the_scaled_tanh_range():
    net = tiny_net()
    with torch.no_grad():
        net.to_rgb.bias.fill_(100.0)  # saturate the tanh
        high = net(torch.rand(1, 3, 16, 16))
        net.to_rgb.bias.fill_(-100.0)
        low = net(torch.rand(1, 3, 16, 16))
    torch.testing.assert_close(high, torch.full_like(high, 0.5 + TANH_SCALE))
    torch.testing.assert_close(low, torch.full_like(low, 0.5 - TANH_SCALE))


def test_instance_norm_makes_each_frame_independent_of_the_batch():
    net = tiny_net()
    first, second = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        alone = net(first)
        batched = net(torch.cat([first, second]))[:1]
    torch.testing.assert_close(alone, batched)


def test_residual_block_adds_the_skip_after_the_relu():
    net = tiny_net(blocks=1)
    block = net.blocks[0]
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        out = block(x)
    assert (out - x).min() >= 0, "x + relu(...): the added part is never negative"


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 1, 16, 16), (1, 4, 16, 16)])
def test_wrong_shapes_are_refused(shape):
    with pytest.raises(ValueError, match="RGB"):
        tiny_net()(torch.rand(*shape))


@pytest.mark.parametrize("settings", [{"width": 0}, {"blocks": -1}])
def test_bad_config_is_refused(settings):
    with pytest.raises(ValueError):
        EnhanceConfig(**settings)
