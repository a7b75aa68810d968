"""The deadline rule, with the clock in the test's hands (times in ms)."""

import numpy as np
import pytest

from smokeclear.stream.frame import Frame, Mode
from smokeclear.stream.presenter import DeadlinePresenter

MS = 1_000_000
BUDGET = 16 * MS


def frame(seq: int, captured_ms: float) -> Frame:
    return Frame(seq, np.zeros((2, 2, 3), np.uint8), int(captured_ms * MS))


def presenter() -> DeadlinePresenter:
    return DeadlinePresenter(BUDGET, no_signal_after_ns=500 * MS)


def test_a_frame_restored_in_time_is_shown_processed():
    p = presenter()
    f = frame(0, 0)
    p.on_captured(f)
    assert p.poll(5 * MS) is None, "nothing to show before the result or the deadline"
    p.on_processed(f)
    shown = p.poll(10 * MS)
    assert shown.mode is Mode.PROCESSED and shown.frame is f
    assert p.idle


def test_a_missed_deadline_shows_the_newest_raw_frame_as_bypass():
    p = presenter()
    p.on_captured(frame(0, 0))
    p.on_captured(live := frame(1, 10))
    shown = p.poll(16 * MS)
    assert shown.mode is Mode.BYPASS and shown.frame is live, "the live frame, not the stale one"


def test_a_late_result_is_discarded_never_shown_late():
    p = presenter()
    f = frame(0, 0)
    p.on_captured(f)
    assert p.poll(17 * MS).mode is Mode.BYPASS
    p.on_processed(f)
    assert p.poll(20 * MS) is None
    p2 = presenter()
    g = frame(0, 0)
    p2.on_captured(g)
    p2.on_processed(g)
    assert p2.poll(30 * MS).mode is Mode.BYPASS, "result past its deadline: raw instead"
    assert p2.late == 1


def test_the_newest_in_time_result_wins_and_shown_seq_only_increases():
    p = presenter()
    frames = [frame(i, i) for i in range(3)]
    for f in frames:
        p.on_captured(f)
    p.on_processed(frames[2])
    p.on_processed(frames[1])
    shown = p.poll(5 * MS)
    assert shown.frame is frames[2]
    p.on_processed(frames[0])
    assert p.poll(6 * MS) is None, "an older result is never shown after a newer frame"
    assert p.idle


def test_pipelined_results_within_a_longer_budget_are_all_shown():
    p = DeadlinePresenter(40 * MS, 500 * MS)  # budget of 2.4 frame periods
    shown = []
    for i in range(10):
        f = frame(i, i * 16.7)
        p.on_captured(f)
        p.on_processed(f)  # each result 30 ms after capture, before the next poll
        result = p.poll(int((i * 16.7 + 30) * MS))
        shown.append(result.mode)
    assert shown == [Mode.PROCESSED] * 10


def test_no_signal_after_silence_and_repeated_once_per_budget():
    p = presenter()
    assert p.poll(0) is None
    assert p.poll(499 * MS) is None
    assert p.poll(500 * MS).mode is Mode.NO_SIGNAL
    assert p.poll(505 * MS) is None
    assert p.poll(517 * MS).mode is Mode.NO_SIGNAL
    p.on_captured(f := frame(0, 600))
    p.on_processed(f)
    assert p.poll(601 * MS).mode is Mode.PROCESSED


def test_next_wakeup_is_the_oldest_deadline():
    p = presenter()
    p.on_captured(frame(0, 100))
    p.on_captured(frame(1, 110))
    assert p.next_wakeup_ns(105 * MS) == 116 * MS


def test_invalid_budget():
    with pytest.raises(ValueError):
        DeadlinePresenter(0, 1)


def test_sustained_misses_show_each_raw_frame_at_once_then_recover():
    p = presenter()
    for i in range(2):  # two misses in a row: fall back
        p.on_captured(frame(i, 16.7 * i))
        assert p.poll(int((16.7 * i + 16) * MS)).mode is Mode.BYPASS
    assert p.falling_back
    shown = []
    for i in range(2, 8):  # each raw frame right away, every frame
        f = frame(i, 16.7 * i)
        p.on_captured(f)
        result = p.poll(f.captured_ns + 1 * MS)
        shown.append((result.mode, result.frame.seq))
    assert shown == [(Mode.BYPASS, i) for i in range(2, 8)]
    for i in range(8, 11):  # the engine catches up: three results in time
        f = frame(i, 16.7 * i)
        f.stamps["postprocess_end"] = f.captured_ns + 8 * MS
        p.on_captured(f)
        p.on_processed(f)
        p.poll(f.captured_ns + 9 * MS)
    assert not p.falling_back
    f = frame(11, 16.7 * 11)
    p.on_captured(f)
    assert p.poll(f.captured_ns + 2 * MS) is None, "waits for the restored frame again"
    p.on_processed(f)
    assert p.poll(f.captured_ns + 9 * MS).mode is Mode.PROCESSED


def test_a_single_miss_does_not_fall_back():
    p = presenter()
    p.on_captured(frame(0, 0))
    assert p.poll(16 * MS).mode is Mode.BYPASS
    p.on_captured(f := frame(1, 16.7))
    p.on_processed(f)
    assert p.poll(int(20 * MS)).mode is Mode.PROCESSED and not p.falling_back
