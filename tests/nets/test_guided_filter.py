import numpy as np
import pytest
import torch

from smokeclear.nets.guided_filter import box_mean, fast_guided_upsample, guided_filter


def reference_guided_filter(
    guide: np.ndarray, source: np.ndarray, radius: int, eps: float
) -> np.ndarray:
    """He et al. Algorithm 1 in float64 with explicit windows clipped at the border
    (the ``boxfilter(I, r) ./ N`` normalisation of He's MATLAB code)."""
    height, width = guide.shape

    def mean(image: np.ndarray) -> np.ndarray:
        out = np.empty_like(image)
        for y in range(height):
            for x in range(width):
                window = image[
                    max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1
                ]
                out[y, x] = window.mean()
        return out

    mean_i, mean_p = mean(guide), mean(source)
    var_i = mean(guide * guide) - mean_i**2
    cov_ip = mean(guide * source) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return mean(a) * guide + mean(b)


def test_box_mean_matches_explicit_windows(rng):
    image = rng.random((1, 1, 9, 13))
    got = box_mean(torch.from_numpy(image), 2)[0, 0].numpy()
    expected = np.array(
        [
            [image[0, 0, max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].mean() for x in range(13)]
            for y in range(9)
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg="box mean over clipped windows")


@pytest.mark.parametrize(("radius", "eps"), [(3, 1.0), (2, 1e-3), (1, 1e-2)])
def test_guided_filter_matches_float64_reference_everywhere(rng, radius, eps):
    guide = rng.random((20, 17)).astype(np.float32)
    source = np.clip(guide + 0.1 * rng.standard_normal((20, 17)), 0, 1).astype(np.float32)
    got = guided_filter(
        torch.from_numpy(guide)[None, None], torch.from_numpy(source)[None, None], radius, eps
    )[0, 0].numpy()
    expected = reference_guided_filter(
        guide.astype(np.float64), source.astype(np.float64), radius, eps
    )
    np.testing.assert_allclose(got, expected, atol=2e-6, err_msg="guided filter vs Algorithm 1")


def test_guided_filter_matches_kornia_in_the_interior(rng):
    """kornia is an independent implementation; its border handling (reflect) differs
    from He's clipped windows, so only pixels whose windows fit are compared. Each
    channel guides itself, as in the pyramid (a 3-channel guide would make kornia
    compute the colour guided filter instead)."""
    kornia = pytest.importorskip(
        "kornia", reason="kornia is the independent reference (test extra)"
    )
    radius, eps = 3, 1e-2
    image = torch.from_numpy(rng.random((1, 3, 40, 48)).astype(np.float32))
    ours = guided_filter(image, image, radius, eps)
    theirs = torch.cat(
        [
            kornia.filters.guided_blur(
                image[:, c : c + 1], image[:, c : c + 1], 2 * radius + 1, eps
            )
            for c in range(3)
        ],
        1,
    )
    margin = 2 * radius  # a and b are averaged again, so two window radii
    inner = (..., slice(margin, -margin), slice(margin, -margin))
    torch.testing.assert_close(ours[inner], theirs[inner], atol=1e-5, rtol=1e-5)


def test_grey_guide_steers_every_channel(rng):
    guide = torch.from_numpy(rng.random((1, 1, 16, 16)).astype(np.float32))
    source = torch.from_numpy(rng.random((1, 3, 16, 16)).astype(np.float32))
    out = guided_filter(guide, source, 2, 1e-2)
    assert out.shape == (1, 3, 16, 16)
    for channel in range(3):
        single = guided_filter(guide, source[:, channel : channel + 1], 2, 1e-2)
        torch.testing.assert_close(out[:, channel : channel + 1], single)


def test_guided_filter_computes_in_float32_for_half_inputs(rng):
    image = torch.from_numpy(rng.random((1, 3, 16, 16)).astype(np.float32))
    out = guided_filter(image.half(), image.half(), 3, 1.0)
    assert out.dtype == torch.float32, "the guided filter must run in FP32 (variance cancels)"


def test_fast_guided_upsample_is_exact_for_an_affine_restorer(rng):
    """Smoke removal is locally affine in the input; a globally affine one is recovered."""
    high = torch.from_numpy(rng.random((1, 3, 64, 96)).astype(np.float32))
    low = torch.nn.functional.avg_pool2d(high, 2)
    output = fast_guided_upsample(low, 1.6 * low - 0.3, high, radius=2, eps=1e-6)
    torch.testing.assert_close(output, 1.6 * high - 0.3, atol=2e-3, rtol=0)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="must match source"):
        guided_filter(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8), 1, 0.1)
    with pytest.raises(ValueError, match="B, C, H, W"):
        guided_filter(torch.rand(8, 8), torch.rand(8, 8), 1, 0.1)
