"""smooth network: the paper's 26-conv layout, residual learning, BN folding, detail mode."""

import pytest
import torch
from torch import nn

from smokeclear.nets.smooth import (
    PAPER_DILATIONS,
    RESIDUAL_SCALE,
    DetailMagnify,
    SmoothConfig,
    SmoothNet,
    detail_magnify,
)

CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def tiny_net(dilations=(2, 1), width: int = 4) -> SmoothNet:
    torch.manual_seed(0)
    return SmoothNet(SmoothConfig(width=width, dilations=dilations))


def randomise(net: SmoothNet) -> SmoothNet:
    """Batch-norm statistics and affine parameters, and the output conv, far from their init."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(size, generator=generator))
                module.weight.copy_(0.5 + torch.rand(size, generator=generator))
                module.bias.copy_(0.4 * torch.rand(size, generator=generator) - 0.2)
        net.to_rgb.weight.copy_(torch.randn(net.to_rgb.weight.shape, generator=generator))
        net.to_rgb.bias.copy_(torch.randn(3, generator=generator))
    return net


def convs_of(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, CONV_TYPES)]


# --------------------------------------------------------------------------- layout


def test_the_paper_config_has_26_convolutions_in_the_paper_layout():
    net = SmoothNet(SmoothConfig())
    assert net.config.width == 64 and net.config.dilations == PAPER_DILATIONS
    assert PAPER_DILATIONS == (2, 2, 4, 4, 8, 8, 16, 16, 1, 1), "paper Sec. 3.3"
    convs = convs_of(net)
    assert len(convs) == 26, f"paper Fig. 4: 26 convolution layers, got {len(convs)}"
    assert [type(c) for c in convs].count(nn.ConvTranspose2d) == 1
    assert isinstance(convs[-3], nn.ConvTranspose2d), "the third from last is the deconvolution"
    up = convs[-3]
    assert up.kernel_size == (4, 4) and up.stride == (2, 2) and up.padding == (1, 1)
    assert [c.stride for c in convs[:3]] == [(1, 1), (1, 1), (2, 2)], "the third conv has stride 2"
    assert all(c.stride == (1, 1) for c in convs[3:-3]), "only the third conv downsamples"
    last = convs[-1]
    assert last.kernel_size == (1, 1) and last.out_channels == 3, "a 1x1 conv to RGB at the end"
    for conv in convs[:-1]:
        if isinstance(conv, nn.Conv2d):
            assert conv.kernel_size == (3, 3), f"3x3 kernels except the ends, got {conv}"
        assert conv.out_channels == 64, f"64 feature maps in every conv but the last: {conv}"
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 25, f"batch norm after every conv but the last, got {len(norms)}"


def test_the_residual_blocks_use_the_configured_dilation_in_both_convs():
    net = SmoothNet(SmoothConfig())
    assert len(net.blocks) == 10, "ten residual blocks"
    for block, dilation in zip(net.blocks, PAPER_DILATIONS, strict=True):
        convs = convs_of(block)
        assert len(convs) == 2, "two convs per residual block"
        for conv in convs:
            assert conv.dilation == (dilation, dilation), (
                f"expected dilation {dilation}, got {conv.dilation}"
            )
            assert conv.padding == (dilation, dilation), "padding keeps the half-resolution size"
    head_and_tail = convs_of(net.head) + convs_of(net.up) + convs_of(net.tail)
    assert all(c.dilation == (1, 1) for c in head_and_tail), "only the blocks are dilated"
    assert len(convs_of(tiny_net((2, 4, 1)))) == 3 + 2 * 3 + 3, "blocks follow the config"


@pytest.mark.parametrize(("height", "width"), [(16, 16), (32, 48), (18, 22)])
def test_output_has_the_input_shape_for_even_sizes(height, width):
    net = randomise(tiny_net()).eval()
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = net(image)
    assert output.shape == image.shape, f"expected {tuple(image.shape)}, got {tuple(output.shape)}"
    assert output.dtype == torch.float32 and torch.isfinite(output).all()
    assert net.input_multiple == 2


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 17, 16), "multiples of 2"),
        ((1, 3, 16, 15), "multiples of 2"),
        ((1, 1, 16, 16), "RGB"),
        ((3, 16, 16), "RGB"),
    ],
)
def test_bad_input_shapes_are_rejected(shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_net()(torch.rand(shape))


@pytest.mark.parametrize(
    "settings",
    [{"width": 0}, {"width": -3}, {"dilations": ()}, {"dilations": (0,)}, {"dilations": (2, -1)}],
)
def test_bad_network_config_is_refused(settings):
    with pytest.raises(ValueError):
        SmoothConfig(**settings)


# --------------------------------------------------------------------------- residual learning


def test_a_fresh_net_is_the_identity_and_a_zero_residual_returns_the_input_exactly():
    image = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(tiny_net().eval()(image), image), "to_rgb starts at zero"
        net = randomise(tiny_net()).eval()
        assert (net(image) - image).abs().max() > 1e-3, "a random residual changes the image"
        net.to_rgb.weight.zero_()
        net.to_rgb.bias.zero_()
        assert torch.equal(net(image), image), "zero residual: the output is the input exactly"


def test_the_residual_is_added_in_8_bit_levels():
    net = randomise(tiny_net()).eval()
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    seen = {}
    hook = net.to_rgb.register_forward_hook(lambda m, args, out: seen.update(residual=out))
    with torch.no_grad():
        output = net(image)
    hook.remove()
    assert abs(RESIDUAL_SCALE - 1 / 255) < 1e-12, "the residual is in 8-bit levels"
    torch.testing.assert_close(output, image + seen["residual"] / 255, atol=1e-6, rtol=0)


def test_training_reaches_every_parameter_once_the_residual_is_not_zero():
    net = randomise(tiny_net()).train()
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    net(image).square().mean().backward()
    missing = [
        name for name, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert not missing, f"expected a gradient for every parameter, none for {missing}"


# --------------------------------------------------------------------------- batch-norm folding


def test_fold_batchnorm_keeps_the_function_and_leaves_no_batch_norm():
    net = randomise(tiny_net((2, 4, 1))).eval()
    image = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = net(image)
        assert net.fold_batchnorm() is net, "folds in place and returns self"
        folded = net(image)
    left = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not left, f"expected no BatchNorm2d after folding, found {len(left)}"
    assert len(convs_of(net)) == 3 + 2 * 3 + 3, "folding keeps every conv"
    error = (folded - expected).abs().max().item()
    assert error < 1e-5, f"folded output should match the eval output, max error {error:.2e}"
    assert (expected - image).abs().max() > 1e-3, "the comparison needs a non-zero residual"


def test_fold_batchnorm_refuses_training_mode():
    net = tiny_net().train()
    with pytest.raises(RuntimeError, match="eval"):
        net.fold_batchnorm()
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules()), "nothing folded"


# --------------------------------------------------------------------------- detail mode


def test_detail_magnify_interpolates_and_extrapolates_between_base_and_image():
    generator = torch.Generator().manual_seed(6)
    image = torch.rand(2, 3, 8, 8, generator=generator)
    base = torch.rand(2, 3, 8, 8, generator=generator)
    torch.testing.assert_close(detail_magnify(image, base, torch.tensor(1.0)), image)
    torch.testing.assert_close(detail_magnify(image, base, torch.tensor(0.0)), base)
    torch.testing.assert_close(
        detail_magnify(image, base, torch.tensor([2.0])), 2 * image - base, atol=1e-6, rtol=0
    )


def test_detail_module_changes_gain_without_rebuilding_and_keeps_it_out_of_the_weights():
    smoother = randomise(tiny_net()).eval()
    module = DetailMagnify(smoother, 1.0).eval()
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        base = smoother(image)
        at_one = module(image)
        buffer = module.detail_gain
        module.set_gain(3.0)
        at_three = module(image)
    torch.testing.assert_close(at_one, image, atol=1e-6, rtol=0)
    assert module.detail_gain is buffer and float(buffer) == 3.0, "set_gain fills the same buffer"
    torch.testing.assert_close(at_three, base + 3 * (image - base), atol=1e-5, rtol=0)
    assert (at_three - at_one).abs().max() > 1e-3, "the gain must change the output"
    keys = set(module.state_dict())
    assert "detail_gain" not in keys, "the gain is a non-persistent buffer"
    assert keys == {f"smoother.{key}" for key in smoother.state_dict()}, (
        "the state dict is the smoother's, so smoother weights load into the detail module"
    )
    assert module.input_multiple == smoother.input_multiple == 2
