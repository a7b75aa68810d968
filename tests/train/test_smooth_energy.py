"""The smooth paper's energy (Eq. 1-8): pieces against direct references, then behaviour.

Images are RGB on [0, 1]; the energy works in 8-bit levels inside (``LEVELS``), so
hand-computed edge responses and flattening sums here are in levels too. The
behavioural tests minimise the energy directly with Adam from the input, on 32 x 32
images and a 9 x 9 window to stay fast on one CPU core.
"""

import math

import pytest
import torch

from smokeclear.train.smooth_energy import (
    EDGE_OFFSETS,
    LEVELS,
    EnergyConfig,
    _Flattening,
    edge_map_of,
    edge_response,
    energy,
    half_window_offsets,
    important_edges,
    large_p_mask,
    minimise_directly,
    rgb_to_yuv,
    window_offsets,
)

#: Eq. 3's neighbourhood in the public code: the 8-neighbourhood and the four axis
#: pixels two steps away.
NEIGHBOURHOOD = {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)} - {(0, 0)} | {
    (-2, 0),
    (2, 0),
    (0, -2),
    (0, 2),
}
SIZE = 32
FAST = EnergyConfig(window=9)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vertical_step(low: float, high: float, size: int = SIZE) -> torch.Tensor:
    """``(1, 3, size, size)`` grey image: ``low`` left of column ``size // 2``, ``high`` from it."""
    image = torch.full((1, 3, size, size), low)
    image[..., size // 2 :] = high
    return image


def step_height(image: torch.Tensor, size: int = SIZE) -> float:
    """Mean jump across the step of :func:`vertical_step`."""
    return float((image[..., size // 2] - image[..., size // 2 - 1]).mean())


def minimise(
    image: torch.Tensor,
    config: EnergyConfig,
    steps: int = 150,
    learning_rate: float = 5e-3,
    edge_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`minimise_directly` with the steps and rate these 32 x 32 tests need."""
    return minimise_directly(image, config, steps, learning_rate, edge_map)


# --------------------------------------------------------------------------- Eq. 3


def edge_response_reference(image: torch.Tensor) -> torch.Tensor:
    """Eq. 3 pixel by pixel: channels summed, then |.| over the neighbourhood, / 6."""
    summed = image[0].sum(0)
    height, width = summed.shape
    response = torch.zeros(1, 1, height, width, dtype=image.dtype)
    for y in range(height):
        for x in range(width):
            for dy, dx in NEIGHBOURHOOD:
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    response[0, 0, y, x] += abs(summed[y, x] - summed[y + dy, x + dx])
    return response / 6


def test_edge_response_neighbourhood_is_the_public_codes():
    assert set(EDGE_OFFSETS) == NEIGHBOURHOOD and len(EDGE_OFFSETS) == 12


def test_edge_response_matches_a_pixel_by_pixel_reference():
    image = 255 * torch.rand(1, 3, 7, 9, dtype=torch.float64, generator=generator(0))
    response = edge_response(image)
    assert response.shape == (1, 1, 7, 9)
    torch.testing.assert_close(response, edge_response_reference(image), rtol=1e-12, atol=1e-9)


def test_edge_response_of_a_single_bright_pixel():
    image = torch.zeros(1, 3, 9, 9, dtype=torch.float64)
    image[..., 4, 4] = 10.0  # 30 levels summed over the channels
    response = edge_response(image)[0, 0]
    expected = torch.zeros(9, 9, dtype=torch.float64)
    expected[4, 4] = 12 * 30 / 6
    for dy, dx in NEIGHBOURHOOD:
        expected[4 - dy, 4 - dx] = 30 / 6  # the bright pixel is one of their neighbours
    torch.testing.assert_close(response, expected)


def test_edge_response_sums_the_channels_before_the_absolute_value():
    ramp = torch.arange(8, dtype=torch.float64).mul(20).expand(1, 1, 6, 8)
    image = torch.cat([ramp, 200 - ramp, torch.full_like(ramp, 50)], dim=1)
    assert edge_response(image[:, :1]).abs().max() > 0, "each channel alone has edges"
    assert edge_response(image).abs().max() == 0, "their sum is constant, so E = 0"


def test_edge_response_ignores_neighbours_outside_the_image():
    flat = torch.full((1, 3, 6, 7), 200.0)
    assert edge_response(flat).abs().max() == 0, (
        "out-of-image neighbours count 0: a flat image has no border response"
    )


# --------------------------------------------------------------------------- edge map B


def line_response(value: float, rows: slice = slice(None), background: float = 0.0):
    edges = torch.full((1, 1, SIZE, SIZE), background)
    edges[0, 0, rows, SIZE // 2] = value
    return edges


@pytest.mark.parametrize(
    ("edges", "marked"),
    [
        (line_response(40.0), True),  # weak (25 < E < 60), >200 neighbours lower by > 20
        (line_response(100.0), True),  # strong, >200 neighbours lower by > 30
        (line_response(24.0), False),  # below the weak band
        (line_response(40.0, background=30.0), False),  # stands out by only 10
        (line_response(100.0, background=75.0), False),  # strong, but only 25 above
        (line_response(100.0, rows=slice(11, 21)), False),  # a 10-pixel fragment
    ],
)
def test_important_edges_heuristic_on_hand_made_responses(edges, marked):
    mask = important_edges(edges)
    assert mask.shape == edges.shape and mask.dtype == torch.bool
    line = edges[0, 0, :, SIZE // 2] == edges.max()
    if marked:
        assert mask[0, 0, :, SIZE // 2].all(), "expected the whole line marked"
        assert mask.sum() == SIZE, f"expected only the line marked, got {int(mask.sum())}"
    else:
        assert not mask.any(), (
            f"expected nothing marked, got {int(mask.sum())} of {int(line.sum())}"
        )


def test_short_fragments_are_kept_when_min_length_allows_them():
    mask = important_edges(line_response(100.0, rows=slice(11, 21)), min_length=5)
    assert int(mask.sum()) == 10, "the 10-pixel fragment is longer than 5"


def test_edge_map_of_a_strong_step_marks_the_step_only():
    image = vertical_step(0.2, 0.8)
    edge_map = edge_map_of(image)
    assert edge_map.shape == (1, 1, SIZE, SIZE) and edge_map.dtype == torch.bool
    assert torch.equal(edge_map, important_edges(edge_response(image * LEVELS)))
    columns = edge_map[0, 0].any(dim=0).nonzero().flatten().tolist()
    assert edge_map[0, 0, :, SIZE // 2 - 1 : SIZE // 2 + 1].all(), (
        f"expected both columns at the step marked in every row, marked columns {columns}"
    )
    assert all(SIZE // 2 - 2 <= c <= SIZE // 2 + 1 for c in columns), (
        f"expected nothing marked farther than 2 pixels from the step, got columns {columns}"
    )
    assert not edge_map_of(torch.full_like(image, 0.5)).any(), "a flat image has no edges"


# --------------------------------------------------------------------------- Eq. 6-8


def test_rgb_to_yuv_of_grey_and_of_pure_red():
    grey = torch.full((1, 3, 2, 2), 0.4)
    torch.testing.assert_close(rgb_to_yuv(grey)[:, 0], torch.full((1, 2, 2), 0.4))
    assert rgb_to_yuv(grey)[:, 1:].abs().max() < 1e-7, "grey has no chroma"
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    expected = torch.tensor([0.299, 0.492 * (0 - 0.299), 0.877 * (1 - 0.299)]).view(1, 3, 1, 1)
    torch.testing.assert_close(rgb_to_yuv(red), expected)


def as_map(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, 1, -1)


def test_large_p_mask_follows_eq_8_and_the_flat_input_rule():
    edges_input = as_map([5.0, 25.0, 5.0, 0.0, 0.0, 19.9, 5.0])
    edges_output = as_map([16.0, 40.0, 15.0, 0.5, 0.0, 30.0, 2.0])
    expected = [
        True,  # E(I) < 20 and the response grew by 11 > 10
        False,  # E(I) >= c1: a real edge, L0.8
        False,  # grew by exactly c2: not more
        True,  # flat input (E(I) = 0) that gained any response (public code)
        False,  # flat and still flat
        True,  # just under c1, grew by 10.1
        False,  # the response fell
    ]
    mask = large_p_mask(edges_input, edges_output, EnergyConfig())
    assert mask.dtype == torch.bool
    assert mask.flatten().tolist() == expected, (
        f"expected {expected}, got {mask.flatten().tolist()}"
    )


def test_detail_enhancement_settings_mark_every_pixel_whose_response_grew():
    generator_ = generator(1)
    edges_input = 100 * torch.rand(1, 1, 8, 8, generator=generator_)
    edges_output = edges_input + torch.randn(1, 1, 8, 8, generator=generator_)
    detail = EnergyConfig(c1=math.inf, c2=0.0)
    mask = large_p_mask(edges_input, edges_output, detail)
    expected = edges_output > edges_input
    assert 0 < expected.sum() < 64, "the case needs both kinds of pixels"
    assert torch.equal(mask, expected), "c1 = inf, c2 = 0: p_large wherever E(T) > E(I)"


def test_expand_large_grows_the_mask_by_that_many_pixels():
    edges_input = torch.full((1, 1, 9, 9), 5.0)
    edges_output = edges_input.clone()
    edges_output[0, 0, 4, 4] = 50.0
    config = EnergyConfig(expand_large=1)
    mask = large_p_mask(edges_input, edges_output, config)
    expected = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    expected[0, 0, 3:6, 3:6] = True
    assert torch.equal(mask, expected), "one large pixel grows into a 3 x 3 block"
    assert int(large_p_mask(edges_input, edges_output, EnergyConfig()).sum()) == 1


def test_window_offsets_and_their_halves():
    offsets = window_offsets(5)
    assert len(offsets) == 24 and len(set(offsets)) == 24 and (0, 0) not in offsets
    assert all(abs(dy) <= 2 and abs(dx) <= 2 for dy, dx in offsets)
    half = half_window_offsets(5)
    mirrored = {(-dy, -dx) for dy, dx in half}
    assert len(half) == 12 and not set(half) & mirrored, "one offset of each +- pair"
    assert set(half) | mirrored == set(offsets)


# --------------------------------------------------------------------------- Eq. 5


def penalty_reference(magnitude: torch.Tensor, p: float) -> torch.Tensor:
    """``|x|^p`` up to the point where its slope reaches ``p`` (one level), then a line of
    slope ``p``: the integral of ``p min(|x|^(p-1), 1)``."""
    if p < 1:
        return torch.where(magnitude <= 1, p * magnitude, magnitude**p + p - 1)
    return torch.where(magnitude <= 1, magnitude**p, p * magnitude - (p - 1))


def flattening_reference(
    output, yuv, large, active, config
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Eq. 5 by a double loop over centres ``i`` and window neighbours ``j``.

    Returns the sum of :func:`penalty_reference`, a surrogate whose gradient is the
    public code's descent direction (``w p min(|x|^(p-1), 1) sign(x)`` per pair,
    ``x`` in 8-bit levels), and the colour affinities used (before the 0.3 floor).
    """
    _, _, height, width = output.shape
    radius = config.window // 2
    total = surrogate = output.new_zeros(())
    affinities = []
    for y in range(height):
        for x in range(width):
            if not active[0, 0, y, x]:
                continue
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    if (dy, dx) == (0, 0) or not (0 <= y + dy < height and 0 <= x + dx < width):
                        continue
                    if large[0, 0, y, x]:
                        p = config.p_large
                        distance = (dy * dy + dx * dx) / (2 * config.sigma_space**2)
                        weight = config.large_weight * math.exp(-distance)
                    else:
                        p = config.p_small
                        colour = float(((yuv[0, :, y, x] - yuv[0, :, y + dy, x + dx]) ** 2).sum())
                        weight = math.exp(-colour / (2 * config.sigma_color**2))
                        affinities.append(weight)
                        weight = weight if weight >= config.color_floor else 0.0
                    magnitude = (output[0, :, y, x] - output[0, :, y + dy, x + dx]).abs()
                    total = total + weight * penalty_reference(magnitude, p).sum()
                    slope = p * (magnitude.detach() ** (p - 1)).clamp(max=1.0)
                    surrogate = surrogate + weight * (slope * magnitude).sum()
    return total, surrogate, affinities


def flattening_case(seed: int = 2, large_fraction: float = 0.4):
    """A 6 x 7 output in levels whose values, per channel, are 6 levels apart or more."""
    height, width = 6, 7
    generator_ = generator(seed)
    values = [torch.randperm(height * width, generator=generator_) * 6.0 + 3 for _ in range(3)]
    output = torch.stack(values).view(1, 3, height, width).to(torch.float64)
    image = 0.4 + 0.2 * torch.rand(1, 3, height, width, dtype=torch.float64, generator=generator_)
    large = torch.rand(1, 1, height, width, generator=generator_) < large_fraction
    active = (torch.rand(1, 1, height, width, generator=generator_) < 0.8).to(torch.float64)
    return output, rgb_to_yuv(image), large, active


def flattening_and_gradient(output, yuv, large, active, config):
    output = output.clone().requires_grad_(True)
    total = _Flattening.apply(output, yuv, large, active, config)
    (grad,) = torch.autograd.grad(total, output)
    return total, grad


def test_flattening_value_and_gradient_match_a_direct_double_loop():
    """Mixed p_large / p_small centres, some centres inactive (on B). The value is Eq. 5
    with the capped-slope penalty; the gradient is the public code's capped one, which
    for these pairs (all at least 6 levels apart) is the true gradient on p_small pairs
    and ``2 sign(x)`` (the slope at one level) on p_large pairs."""
    config = EnergyConfig(window=5)
    output, yuv, large, active = flattening_case()
    assert large.any() and (~large).any() and 0 < active.sum() < active.numel()
    ours, ours_grad = flattening_and_gradient(output, yuv, large, active, config)
    reference_input = output.clone().requires_grad_(True)
    reference, surrogate, affinities = flattening_reference(
        reference_input, yuv, large, active, config
    )
    (reference_grad,) = torch.autograd.grad(surrogate, reference_input)
    below = sum(a < config.color_floor for a in affinities)
    assert 0 < below < len(affinities), "the case needs colour affinities on both sides of 0.3"
    assert ours.item() == pytest.approx(reference.item(), rel=1e-10), (
        f"expected the Eq. 5 sum {reference.item():.6f}, got {ours.item():.6f}"
    )
    torch.testing.assert_close(ours_grad, reference_grad, rtol=1e-9, atol=1e-9)


def test_flattening_gradient_is_the_true_gradient_of_eq_5_for_p_small_pairs_over_a_level():
    config = EnergyConfig(window=5)
    output, yuv, large, active = flattening_case(seed=3, large_fraction=0.0)
    assert not large.any()
    _, ours_grad = flattening_and_gradient(output, yuv, large, active, config)
    reference_input = output.clone().requires_grad_(True)
    reference, _, _ = flattening_reference(reference_input, yuv, large, active, config)
    (true_grad,) = torch.autograd.grad(reference, reference_input)
    assert true_grad.abs().max() > 0
    torch.testing.assert_close(ours_grad, true_grad, rtol=1e-9, atol=1e-9)


def test_flattening_slope_is_capped_at_its_value_at_one_level():
    """``p min(|x|^(p-1), 1)``: for p < 1 the cap acts below one level (finite at 0),
    for p = 2 above it (public code)."""
    config = EnergyConfig(window=3)
    yuv = torch.zeros(1, 3, 1, 2, dtype=torch.float64)  # colour affinity 1
    active = torch.ones(1, 1, 1, 2, dtype=torch.float64)
    output = torch.zeros(1, 3, 1, 2, dtype=torch.float64)
    output[0, 0, 0, 0], output[0, 1, 0, 0] = 0.1, 3.0  # pairs 0.1 and 3 levels apart
    small = torch.zeros(1, 1, 1, 2, dtype=torch.bool)
    total, grad = flattening_and_gradient(output, yuv, small, active, config)
    # Both pixels are centres of the one pair: twice its weight.
    expected = 2 * (0.8 * 0.1 + 3.0**0.8 + 0.8 - 1)
    assert total.item() == pytest.approx(expected), "the value is the slope's integral"
    assert grad[0, 0, 0, 0].item() == pytest.approx(2 * 0.8), "p = 0.8 below a level: capped"
    assert grad[0, 1, 0, 0].item() == pytest.approx(2 * 0.8 * 3.0**-0.2), "above a level: exact"
    assert grad[0, 2, 0, 0].item() == 0.0, "no difference, no gradient"
    torch.testing.assert_close(grad[..., 1], -grad[..., 0])
    large = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    total, grad = flattening_and_gradient(output, yuv, large, active, config)
    spatial = config.large_weight * math.exp(-1 / (2 * config.sigma_space**2))
    assert total.item() == pytest.approx(2 * spatial * (0.1**2 + 2 * 3.0 - 1)), "Huber"
    assert grad[0, 0, 0, 0].item() == pytest.approx(2 * spatial * 2 * 0.1), "p = 2 below: 2|x|"
    assert grad[0, 1, 0, 0].item() == pytest.approx(2 * spatial * 2), "p = 2 above a level: 2"


def test_energy_flatten_term_is_eq_5_of_the_output_in_levels_with_the_inputs_yuv():
    config = EnergyConfig(window=5)
    generator_ = generator(3)
    image = 0.4 + 0.2 * torch.rand(1, 3, 6, 7, dtype=torch.float64, generator=generator_)
    output = image + 0.05 * torch.randn(image.shape, generator=generator_, dtype=torch.float64)
    edge_map = torch.rand(1, 1, 6, 7, generator=generator_) < 0.2
    terms = energy(output, image, edge_map, config)
    large = large_p_mask(edge_response(image * 255), edge_response(output * 255), config)
    active = (~edge_map).to(torch.float64)
    reference, _, _ = flattening_reference(output * 255, rgb_to_yuv(image), large, active, config)
    assert terms.flatten.item() == pytest.approx(reference.item() / output.numel(), rel=1e-9), (
        "E_f: the sum over centres off B, in 8-bit levels, over 3 H W, with the input's YUV"
    )
    assert terms.large_fraction.item() == pytest.approx(large.double().mean().item())


# --------------------------------------------------------------------------- energy


def test_energy_terms_are_the_weighted_sum_of_eq_1():
    config = EnergyConfig(window=5, flatten_weight=0.5, edge_weight=0.3)
    generator_ = generator(4)
    image = torch.rand(1, 3, 16, 16, generator=generator_)
    output = (image + 0.03 * torch.randn(image.shape, generator=generator_)).clamp(0, 1)
    edge_map = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    edge_map[0, 0, 4:12, 8] = True
    terms = energy(output, image, edge_map, config)
    data = ((output - image) * 255).pow(2).mean()
    gap = edge_response(output * 255) - edge_response(image * 255)
    edge = gap[edge_map].pow(2).mean()
    torch.testing.assert_close(terms.data, data)
    torch.testing.assert_close(terms.edge, edge)
    assert terms.edge > 0 and terms.flatten > 0
    torch.testing.assert_close(terms.total, data + 0.5 * terms.flatten + 0.3 * edge)
    for name in ("total", "data", "flatten", "edge", "large_fraction"):
        assert getattr(terms, name).shape == (), f"{name} should be a scalar tensor"


def test_the_edge_term_is_zero_without_important_edges():
    image = torch.rand(1, 3, 16, 16, generator=generator(5))
    output = (image + 0.1).clamp(0, 1) * 0.5
    nothing = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    terms = energy(output, image, nothing, EnergyConfig(window=5))
    assert terms.edge.item() == 0.0, "E_e averages over B; with B empty it is 0, not NaN"
    assert torch.isfinite(terms.total) and terms.data > 0


def test_energy_of_the_input_itself_has_no_data_or_edge_cost():
    image = vertical_step(0.2, 0.8)
    terms = energy(image, image, edge_map_of(image), FAST)
    assert terms.data.item() == 0.0 and terms.edge.item() == 0.0
    assert terms.large_fraction.item() == 0.0, "no response grew"


@pytest.mark.parametrize(
    ("output_shape", "edge_shape"),
    [
        ((1, 3, 16, 18), (1, 1, 16, 16)),  # output and image differ
        ((1, 1, 16, 16), (1, 1, 16, 16)),  # not RGB
        ((1, 3, 16, 16), (1, 3, 16, 16)),  # edge map with channels
        ((1, 3, 16, 16), (1, 1, 8, 8)),  # edge map of another size
        ((1, 3, 16, 16), (2, 1, 16, 16)),  # edge map of another batch
    ],
)
def test_energy_rejects_mismatched_shapes(output_shape, edge_shape):
    image_shape = (1, output_shape[1], 16, 16)
    with pytest.raises(ValueError, match=r"expected|edge_map"):
        energy(
            torch.rand(output_shape),
            torch.rand(image_shape),
            torch.zeros(edge_shape, dtype=torch.bool),
            FAST,
        )


@pytest.mark.parametrize(
    "settings",
    [
        {"window": 20},
        {"window": 1},
        {"sigma_color": 0.0},
        {"sigma_space": -1.0},
        {"p_small": 0.0},
        {"p_large": 2.5},
        {"expand_large": -1},
    ],
)
def test_bad_energy_config_is_refused(settings):
    with pytest.raises(ValueError):
        EnergyConfig(**settings)


def test_the_gradient_is_finite_when_the_output_is_the_input():
    """``|x|^(p-1)`` at x = 0 is infinite for p < 1: flat regions and equal pixels must not
    turn the gradient into NaN or inf."""
    image = vertical_step(0.2, 0.8)
    image[..., 4:12, 4:12] += 0.02 * torch.randn(1, 3, 8, 8, generator=generator(6))
    output = image.clone().requires_grad_(True)
    energy(output, image, edge_map_of(image), EnergyConfig()).total.backward()
    assert torch.isfinite(output.grad).all(), "expected a finite gradient at T = I"
    assert output.grad[..., 4:12, 4:12].abs().max() > 0, "the noisy patch is pulled flat"


# --------------------------------------------------------------------------- behaviour


def test_a_strong_step_is_detected_and_kept():
    image = vertical_step(0.2, 0.8)
    output = minimise(image, FAST, steps=100)
    kept = step_height(output) / step_height(image)
    assert kept >= 0.9, f"expected >= 90% of the step kept, got {kept:.1%}"
    for side in (output[..., : SIZE // 2 - 1], output[..., SIZE // 2 + 1 :]):
        spread = float(side.max() - side.min()) * 255
        assert spread < 1.0, f"expected flat sides to stay flat, spread {spread:.2f} levels"


def test_the_edge_term_holds_up_a_detected_step_that_flattening_would_remove():
    """A 30-level step (colour affinity 0.49, above the 0.3 floor) is in reach of the
    L0.8 term; only Eq. 4 on its important edge points holds it up."""
    image = vertical_step(0.44, 0.56)
    edge_map = edge_map_of(image)
    assert edge_map[0, 0, :, SIZE // 2 - 1 : SIZE // 2 + 1].all(), "the step is in B"
    with_edge_term = step_height(minimise(image, FAST, edge_map=edge_map)) / step_height(image)
    without = EnergyConfig(window=9, edge_weight=0.0)
    without_edge_term = step_height(minimise(image, without, edge_map=edge_map)) / step_height(
        image
    )
    assert with_edge_term >= 0.3 and with_edge_term > 3 * without_edge_term, (
        f"expected the edge term to keep >= 30% of the step and 3x more than without it, "
        f"got {with_edge_term:.1%} with and {without_edge_term:.1%} without"
    )


def test_a_ramp_stays_monotonic_and_eq_8_caps_its_staircase():
    """Direct minimisation of L0.8 on a ramp forms steps (paper Sec. 5.1: Adam staircases);
    Eq. 8 switches a pixel to L2 once its edge response grew by c2, which caps the steps."""
    image = torch.linspace(0.3, 0.7, SIZE).expand(1, 3, SIZE, SIZE).contiguous()
    assert not edge_map_of(image).any(), "a gentle ramp has no important edges"
    pixel_step = 0.4 / (SIZE - 1)

    def staircase(config: EnergyConfig) -> tuple[torch.Tensor, float]:
        output = minimise(image, config, steps=100)
        grown = edge_response(output * LEVELS) - edge_response(image * LEVELS)
        return output, float(grown.max())

    output, grown = staircase(FAST)
    steps = output[..., 1:] - output[..., :-1]
    assert float(steps.min()) * 255 > -1.0, (
        f"expected a monotonic ramp (within 1 level), smallest step {float(steps.min()) * 255:.2f}"
    )
    span = float((output[..., -1] - output[..., 0]).mean()) / 0.4
    assert span > 0.5, f"expected the ramp to keep at least half its rise, kept {span:.0%}"
    assert float(steps.max()) < 5 * pixel_step, (
        f"expected no jump over 5 pixel steps, got {float(steps.max()) / pixel_step:.1f}"
    )
    assert grown < FAST.c2 + 5, (
        f"expected Eq. 8 to stop the response growing much past c2 = {FAST.c2}, grew {grown:.1f}"
    )
    _, grown_without_l2 = staircase(EnergyConfig(window=9, c2=math.inf))
    assert grown_without_l2 > FAST.c2 + 5, (
        f"the check needs a case where no L2 lets the steps grow, grew {grown_without_l2:.1f}"
    )


def test_noise_on_a_flat_image_is_flattened_and_the_mean_stays():
    noise = 0.02 * torch.randn(1, 3, SIZE, SIZE, generator=generator(7))
    image = 0.5 + noise
    assert not edge_map_of(image).any(), "noise has no important edges"
    output = minimise(image, FAST, steps=100)
    before, after = float(image.std()), float(output.std())
    assert after < 0.5 * before, f"expected the noise std to halve at least: {before} -> {after}"
    drift = abs(float(output.mean() - image.mean())) * 255
    assert drift < 0.5, f"expected the mean to stay within half a level, moved {drift:.2f}"
