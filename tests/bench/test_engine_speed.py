"""Engine-only timing: warm-up excluded, every stage and the total per frame."""

from __future__ import annotations

import numpy as np

from smokeclear.bench.engine_speed import cuda_stream, time_engine
from smokeclear.stream.stats import percentiles

MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, ns: int) -> None:
        self.now_ns += ns


class ClockedEngine:
    """An engine double on a fake clock: upload 1 ms, infer 2 ms (1 s while warming up),
    download 3 ms."""

    name = "clocked-double"

    def __init__(self, clock: FakeClock, slow_calls: int) -> None:
        self.clock = clock
        self.slow_calls = slow_calls
        self.calls = 0

    def upload(self, frame: np.ndarray) -> np.ndarray:
        self.clock.advance(1 * MS)
        return frame

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.clock.advance(1000 * MS if self.calls <= self.slow_calls else 2 * MS)
        return tensor

    def download(self, tensor: np.ndarray, height: int, width: int) -> np.ndarray:
        self.clock.advance(3 * MS)
        return tensor[:height, :width]


def test_warm_up_frames_are_run_but_not_timed():
    clock = FakeClock()
    engine = ClockedEngine(clock, slow_calls=4)
    frames = [np.zeros((8, 16, 3), np.uint8)]
    samples = time_engine(engine, frames, iterations=10, warmup=4, clock=clock)
    assert engine.calls == 14, "warm-up frames run through the engine too"
    assert set(samples) == {"upload", "infer", "download", "total"}, "no GPU time off CUDA"
    assert samples["infer"] == [2 * MS] * 10, "the slow warm-up calls are excluded"
    assert samples["total"] == [6 * MS] * 10
    stats = percentiles(samples["infer"])
    assert (stats.count, stats.p50, stats.p99, stats.max) == (10, 2.0, 2.0, 2.0)


def test_a_cpu_engine_has_no_cuda_stream():
    assert cuda_stream(ClockedEngine(FakeClock(), 0)) is None


def test_torch_engines_publish_their_stream_and_the_cpu_has_none():
    from smokeclear.engines.torch_engine import TorchEngine

    engine = TorchEngine(lambda: None, device="cpu")
    assert engine.cuda_stream is None and cuda_stream(engine) is None
