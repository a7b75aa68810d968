"""The device pixel functions agree with the host reference, and PixelIO wraps a restorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smokeclear.engines.base import bgr8_to_nchw, nchw_to_bgr8
from smokeclear.engines.device_pixels import PixelIO, bgr8_to_input, output_to_bgr8

SIZES = [(16, 16), (17, 23), (45, 61), (8, 40)]


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize("multiple", [1, 8, 32])
def test_frame_to_input_matches_the_host_reference(rng, height, width, multiple):
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = bgr8_to_nchw(frame, multiple)
    actual = bgr8_to_input(torch.from_numpy(frame), multiple, torch.float32).numpy()
    assert actual.shape == expected.shape, f"padded to {expected.shape}, got {actual.shape}"
    np.testing.assert_array_equal(actual, expected, err_msg="same float32 bits as numpy")


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_output_to_frame_matches_the_host_reference(rng, height, width):
    # Out of range and half-way values: clamping and rounding are part of the contract.
    tensor = rng.uniform(-0.2, 1.2, (1, 3, height + 5, width + 3)).astype(np.float32)
    tensor[0, 0, 0, 0] = 127.5 / 255
    expected = nchw_to_bgr8(tensor, height, width)
    actual = output_to_bgr8(torch.from_numpy(tensor), height, width).numpy()
    assert actual.dtype == np.uint8 and actual.shape == (height, width, 3)
    np.testing.assert_array_equal(actual, expected)


def test_half_input_is_within_half_precision_of_the_reference(rng):
    frame = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    half = bgr8_to_input(torch.from_numpy(frame), 8, torch.float16)
    assert half.dtype == torch.float16
    np.testing.assert_allclose(half.float().numpy(), bgr8_to_nchw(frame, 8), atol=1e-3)


def test_pixel_io_runs_a_restorer_between_frames(rng):
    class Invert(torch.nn.Module):
        input_multiple = 8

        def forward(self, image):
            assert image.shape[2] % 8 == 0 and image.shape[3] % 8 == 0, image.shape
            return 1 - image

    frame = rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    restored = PixelIO(Invert())(torch.from_numpy(frame)).numpy()
    assert restored.shape == frame.shape and restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, 255 - frame)
