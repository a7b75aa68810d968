import pytest
import torch

from smokeclear.nets.dereflect import (
    LAPLACIAN_KERNEL,
    DereflectConfig,
    DereflectNet,
    MultiScaleLaplacian,
    whiteness_gate,
)


def tiny_net(**overrides) -> DereflectNet:
    """A width-2 net; the whiteness gate off unless asked for (its own tests below)."""
    torch.manual_seed(0)
    overrides = {"pass_through_whiteness": (0.0, 0.0), **overrides}
    return DereflectNet(DereflectConfig(width=2, se_blocks=1, **overrides)).eval()


def test_shapes_of_the_output_and_of_every_iteration():
    net = tiny_net()
    image = torch.rand(2, 3, 24, 40)
    assert net(image).shape == image.shape
    outputs = net.iterate(image, side_outputs=True)
    assert len(outputs) == 3, "N = 3 iterations"
    for output in outputs:
        assert output.transmission.shape == (2, 3, 24, 40)
        assert output.reflection.shape == (2, 3, 24, 40) and output.reflection.min() >= 0
        assert output.confidence.shape == (2, 1, 24, 40)
        assert output.confidence.min() > 0 and output.confidence.max() < 1
        assert output.side_half.shape == (2, 3, 12, 20)
        assert output.side_quarter.shape == (2, 3, 6, 10)
        assert output.hidden.shape == output.cell.shape == (2, 4, 24, 40), "state is 2w"
    assert net.iterate(image)[0].side_half is None, "side outputs only when asked"


def test_the_paper_width_has_the_papers_parameter_count():
    net = DereflectNet(DereflectConfig(width=32))
    count = sum(p.numel() for p in net.parameters())
    assert round(count / 1e6, 3) == 10.926, f"the paper reports 10.926 M, this has {count}"


def test_laplacian_kernel_starts_as_the_paper_says_and_is_learnable():
    laplacian = MultiScaleLaplacian(6)
    expected = torch.tensor(LAPLACIAN_KERNEL)
    assert laplacian.kernel.shape == (6, 1, 3, 3)
    for channel in laplacian.kernel:
        assert torch.equal(channel[0], expected)
    assert torch.equal(expected, torch.tensor([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]).float())
    assert laplacian.kernel.requires_grad


def test_laplacian_is_zero_on_flat_images_and_has_four_scales():
    laplacian = MultiScaleLaplacian(6)
    flat = torch.full((1, 6, 64, 64), 0.4)
    response = laplacian(flat)
    assert response.shape == (1, 24, 64, 64)
    interior = response[..., 24:-24, 24:-24]
    assert interior.abs().max() < 1e-5, "a Laplacian of a constant is 0 away from the border"
    spot = flat.clone()
    spot[..., 16, 16] = 1.0
    full_scale = laplacian(spot)[:, 18:]
    assert full_scale[..., 16, 16].min().item() == pytest.approx(4 * 0.6), (
        "the kernel's centre weight"
    )


def test_unrolled_iterations_equal_a_loop_over_the_shared_step():
    net = tiny_net()
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        state = torch.zeros(1, 4, 16, 16)
        previous, hidden, cell = image, state, state
        for _ in range(3):
            previous, _, _, _, _, hidden, cell = net.step(image, previous, hidden, cell)
        assert torch.equal(net(image), previous)


def test_more_iterations_refine_the_previous_estimate():
    net = tiny_net(iterations=2)
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        first, second = net.iterate(image)
    assert not torch.equal(first.transmission, second.transmission)


def test_the_confidence_gate_changes_a_frame_only_where_a_reflection_is_located():
    gated, plain = tiny_net(iterations=1), tiny_net(iterations=1, confidence_gate=False)
    plain.load_state_dict(gated.state_dict())
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        (step,) = gated.iterate(image)
        (ungated,) = plain.iterate(image)
        expected = image + step.confidence * (ungated.transmission - image)
        torch.testing.assert_close(step.transmission, expected, atol=1e-6, rtol=0)
        assert (ungated.transmission - image).abs().max() > 1e-3, "the tiny net changes it"
        gated.step.confidence_head[-1].bias.fill_(-30.0)  # confidence ~0: nothing located
        torch.testing.assert_close(gated(image), image, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("band", "share"),
    [((0.0, 0.0), 0.5), ((0.25, 0.75), 0.5), ((0.1, 0.3), 1.0), ((0.6, 0.9), 0.0)],
)
def test_pass_through_confidence_rescales_the_gate(band, share):
    gated = tiny_net(iterations=1, pass_through_confidence=band)
    plain = tiny_net(iterations=1, confidence_gate=False)
    with torch.no_grad():
        head = gated.step.confidence_head[-1]
        head.weight.zero_()
        head.bias.zero_()  # C = 0.5 everywhere
        plain.load_state_dict(gated.state_dict())
        image = torch.rand(1, 3, 16, 16)
        expected = image + share * (plain(image) - image)
        torch.testing.assert_close(gated(image), expected, atol=1e-6, rtol=0)


def test_whiteness_gate_opens_at_a_highlight_and_fades_over_its_halo():
    image = torch.full((1, 3, 64, 64), 0.3)
    image[0, 0] = 0.9  # bright red tissue: one channel high is not a highlight
    assert whiteness_gate(image, 0.5, 0.7, 8).abs().max() == 0
    image[:, :, 32, 32] = 0.95  # a white highlight
    gate = whiteness_gate(image, 0.5, 0.7, 8)[0, 0]
    assert gate.shape == (64, 64) and gate.dtype == torch.float32
    assert gate[32, 32] == 1, "fully open on the highlight"
    row = gate[32, 36:]
    assert (row[1:] <= row[:-1]).all(), "closing with the distance from it"
    assert 1 > gate[32, 40] > gate[32, 52] > 0, "a halo of about twice the radius"
    assert gate[32, 60:].abs().max() == 0 and gate[:12].abs().max() == 0, "closed beyond"
    image[:, :, 32, 32] = 0.6  # half way up the ramp
    assert whiteness_gate(image, 0.5, 0.7, 0)[0, 0, 32, 32].item() == pytest.approx(0.5)


def test_the_whiteness_gate_passes_a_frame_without_highlights_unchanged():
    gated = tiny_net(pass_through_whiteness=(0.5, 0.7), whiteness_radius=2)
    plain = tiny_net()
    plain.load_state_dict(gated.state_dict())
    image = torch.rand(1, 3, 64, 64) * 0.45  # no pixel's darkest channel reaches 0.5
    with torch.no_grad():
        assert (plain(image) - image).abs().max() > 1e-3, "the tiny net changes it"
        torch.testing.assert_close(gated(image), image, atol=0, rtol=0)
        image[:, :, 8, 8] = 1.0
        changed = (gated(image) - image).abs().amax(dim=1)[0]
        full = (plain(image) - image).abs().amax(dim=1)[0]
        assert changed[8, 8] == full[8, 8] > 0, "the whole correction on the highlight"
        assert 0 < changed[8, 20] < full[8, 20], "part of it beside"
        assert changed[40:].max() == 0 and changed[:, 40:].max() == 0, "none far from it"


def test_paper_output_head_is_non_negative():
    net = tiny_net(residual=False)
    with torch.no_grad():
        assert net(torch.rand(1, 3, 16, 16)).min() >= 0


def test_trains_end_to_end_including_the_laplacian_kernel():
    net = tiny_net().train()
    outputs = net.iterate(torch.rand(2, 3, 16, 16), side_outputs=True)
    loss = sum(o.transmission.mean() + o.side_quarter.mean() for o in outputs)
    loss.backward()
    assert net.step.laplacian.kernel.grad is not None
    assert net.step.laplacian.kernel.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "shape, message",
    [((1, 3, 20, 16), "multiples of 8"), ((1, 4, 16, 16), "RGB"), ((3, 16, 16), "RGB")],
)
def test_bad_input_shapes_are_refused(shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_net()(torch.rand(*shape))


@pytest.mark.parametrize(
    "overrides",
    [
        {"width": 1},
        {"iterations": 0},
        {"se_blocks": 0},
        {"se_reduction": 0},
        {"pass_through_confidence": (0.5, 0.2)},
        {"pass_through_whiteness": (0.7, 0.5)},
        {"whiteness_radius": -1},
    ],
)
def test_bad_config_is_refused(overrides):
    with pytest.raises(ValueError):
        DereflectConfig(**overrides)
