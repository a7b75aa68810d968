import numpy as np

from smokeclear.train.dcp import atmospheric_light, dark_channel, dehaze_dcp
from smokeclear.train.metrics import psnr


def test_dark_channel_is_the_patch_minimum(rng):
    image = rng.random((20, 20, 3)).astype(np.float32)
    dark = dark_channel(image, 3)
    assert dark[10, 10] == image[9:12, 9:12].min()


def test_dcp_removes_uniform_haze_from_a_colourful_scene(rng):
    """Haze with constant transmission over a scene whose patches each hold a dark
    pixel (the prior's assumption) and a "sky" as bright as the haze, where He et al.
    find the atmospheric light: DCP must get much closer to the clean scene."""
    clean = rng.random((96, 96, 3)).astype(np.float32) * 0.8
    clean[::4, ::4] = 0.02  # a dark pixel in every patch
    light = np.array([0.9, 0.9, 0.9], np.float32)
    clean[:20, :20] = light  # the sky: infinitely far, all haze
    hazy = clean * 0.5 + light * 0.5
    restored = dehaze_dcp(hazy)
    assert psnr(clean[20:], restored[20:]) > psnr(clean[20:], hazy[20:]) + 6
    np.testing.assert_allclose(atmospheric_light(hazy, dark_channel(hazy, 15)), light, atol=0.1)
