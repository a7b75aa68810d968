import numpy as np
import pytest

from smokeclear.stream.frame import Mode
from smokeclear.stream.overlay import (
    MODE_COLOURS,
    compose_view,
    detail_gain_label,
    draw_status,
    no_signal_card,
)


def test_views_lay_out_raw_and_restored():
    raw = np.zeros((20, 40, 3), np.uint8)
    restored = np.full((20, 40, 3), 200, np.uint8)
    assert (compose_view("processed", raw, restored) == 200).all()
    side = compose_view("side-by-side", raw, restored)
    assert side.shape == (20, 80, 3) and (side[:, :40] == 0).all() and (side[:, 40:] == 200).all()
    split = compose_view("split", raw, restored)
    assert (split[:, :19] == 0).all() and (split[:, 21:] == 200).all()
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
