import numpy as np
import pytest

from smokeclear.stream.frame import Frame, Mode
from smokeclear.stream.stats import LatencyLog, Timeline, percentiles, resident_memory_mb

MS = 1_000_000


def test_percentiles_in_milliseconds():
    result = percentiles([i * MS for i in range(1, 101)])
    assert result.count == 100 and result.max == 100.0
    assert result.p50 == pytest.approx(50.5) and result.p99 == pytest.approx(99.01)
    assert np.isnan(percentiles([]).p50)


def test_warm_up_frames_are_excluded():
    log = LatencyLog(warmup_frames=5)
    for seq in range(10):
        frame = Frame(seq, np.zeros((1, 1, 3), np.uint8), 0)
        frame.stamps.update(infer_start=0, infer_end=(100 if seq < 5 else 10) * MS)
        log.record_stages(frame)
        log.record_presented(frame, Mode.PROCESSED, 20 * MS)
    summary = log.summary()
    assert summary["infer"].count == 5 and summary["infer"].max == 10.0
    assert summary["end to end, processed"].count == 5
    assert log.samples("infer") == [10 * MS] * 5, "the raw samples are past the warm-up too"
    assert log.samples("no such stage") == []


def test_timeline_closes_windows():
    timeline = Timeline(window_s=1.0)
    for i in range(25):
        timeline.record(Mode.PROCESSED if i % 5 else Mode.BYPASS, 8 * MS, i * 100 * MS)
    timeline.tick(2_500 * MS, final=True)
    assert [w["shown_processed"] + w["bypassed"] for w in timeline.windows] == [10, 10, 5]
    assert timeline.windows[0]["end_to_end_p50_ms"] == 8.0


def test_resident_memory_is_known_on_linux():
    import sys

    if sys.platform.startswith("linux"):
        assert resident_memory_mb() > 10
