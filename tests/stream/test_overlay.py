import numpy as np
import pytest

from smokeclear.stream.frame import Mode
from smokeclear.stream.overlay import (
    MODE_COLOURS,
    RAW_COLOUR,
    compose_view,
    detail_gain_label,
    draw_status,
    no_signal_card,
)


def test_views_lay_out_raw_and_restored():
    raw = np.zeros((80, 160, 3), np.uint8)
    restored = np.full((80, 160, 3), 200, np.uint8)
    assert (compose_view("processed", raw, restored) == 200).all()
    side = compose_view("side-by-side", raw, restored)
    below_label = slice(40, None)
    assert side.shape == (80, 320, 3)
    assert (side[below_label, :160] == 0).all() and (side[:, 160:] == 200).all()
    split = compose_view("split", raw, restored)
    assert (split[below_label, :79] == 0).all() and (split[:, 81:] == 200).all()
    assert (compose_view("processed", raw, None) == 0).all(), "BYPASS shows the raw frame"
    with pytest.raises(ValueError):
        compose_view("mosaic", raw, restored)


def test_compose_never_writes_into_the_frames():
    raw = np.zeros((20, 40, 3), np.uint8)
    view = compose_view("processed", raw, None)
    draw_status(view, Mode.BYPASS)
    assert not raw.any(), "overlays are drawn on copies"


@pytest.mark.parametrize("mode", list(Mode))
def test_every_mode_is_labelled_in_its_colour(mode):
    image = draw_status(np.full((120, 200, 3), 128, np.uint8), mode)
    colour = np.array(MODE_COLOURS[mode], np.uint8)
    assert (image == colour).all(axis=2).any(), f"{mode.value} label missing"


def test_bypass_is_framed_all_around():
    image = draw_status(np.full((120, 200, 3), 128, np.uint8), Mode.BYPASS)
    amber = np.array(MODE_COLOURS[Mode.BYPASS], np.uint8)
    for edge in (image[-1, 100], image[60, 0], image[60, -1]):
        np.testing.assert_array_equal(edge, amber)


def test_no_signal_card():
    card = no_signal_card(160, 90)
    assert card.shape == (90, 160, 3)


def test_detail_gain_label():
    assert detail_gain_label(None) == "", "smooth mode shows no gain"
    assert detail_gain_label(2.5) == "detail x2.5"
    assert detail_gain_label(2.0, fixed=True) == "detail x2 (fixed)"


def _label_pixels(region: np.ndarray, colour) -> int:
    """How many pixels of ``region`` are near the label colour (text is anti-aliased)."""
    distance = np.abs(region.astype(int) - np.array(colour)).max(axis=2)
    return int((distance <= 40).sum())


@pytest.mark.parametrize("view", ["side-by-side", "split"])
@pytest.mark.parametrize("mode", [Mode.PROCESSED, Mode.BYPASS])
def test_each_half_says_which_it_is(view, mode):
    """RAW on the raw half, the mode on the restored half, and no mode on the raw half."""
    raw = np.full((90, 160, 3), 90, np.uint8)
    restored = None if mode is Mode.BYPASS else np.full((90, 160, 3), 160, np.uint8)
    image = draw_status(compose_view(view, raw, restored), mode)
    middle = image.shape[1] // 2
    top = image[:30]
    raw_half, restored_half = top[:, : middle - 3], top[:, middle + 3 :]  # not the split line
    assert _label_pixels(raw_half, RAW_COLOUR) > 20, "RAW label missing on the raw half"
    assert _label_pixels(restored_half, RAW_COLOUR) == 0, "RAW label on the restored half"
    assert _label_pixels(restored_half, MODE_COLOURS[mode]) > 20, f"{mode.value} label missing"
    inner = raw_half[8:, 8:]  # inside the amber BYPASS border
    assert _label_pixels(inner, MODE_COLOURS[mode]) == 0, f"{mode.value} label on the raw half"


def test_the_processed_view_has_no_raw_label():
    image = compose_view("processed", np.full((90, 160, 3), 90, np.uint8), None)
    assert _label_pixels(image, RAW_COLOUR) == 0
