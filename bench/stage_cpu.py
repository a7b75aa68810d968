"""CPU time of the live graph's stage threads, read from /proc while a block runs."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

#: Python thread names of the graph's stages (``infer-N``: the Nth infer worker).
STAGE_THREADS = ("capture", "preprocess", "infer", "postprocess", "presenter")


def stage_of(thread_name: str) -> str | None:
    """``infer-3`` -> ``infer``; None for threads that are not a graph stage."""
    stage = thread_name.split("-")[0]
    return stage if stage in STAGE_THREADS else None


def thread_cpu_seconds(native_id: int) -> float | None:
    """User + system CPU seconds of one thread of this process (Linux /proc), or None."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields 14 and 15 of stat(5) (utime, stime); the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StageCpu:
    """CPU use of the graph's threads by stage while the block runs, in % of one core.

    Stage threads are Python threads named after their stage (capture, preprocess,
    infer-N, postprocess; the bench names the presenters); a sampler reads their
    CPU time from /proc every ``interval_s`` (a thread's last ``interval_s`` before
    it exits is missed). Native pools (onnxruntime, OpenMP, CUDA) are not Python
    threads: their time is in ``other``, with the main thread's.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._last: dict[int, tuple[str, float]] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)
        self.figures: dict[str, Any] = {}

    def __enter__(self) -> StageCpu:
        self._wall = time.monotonic()
        self._times = os.times()
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()
        self._sample()
        wall = time.monotonic() - self._wall
        now = os.times()
        process = (now.user - self._times.user) + (now.system - self._times.system)
        stages: dict[str, float] | None = None
        if os.path.isdir("/proc/self/task"):
            stages = dict.fromkeys(STAGE_THREADS, 0.0)
            for stage, seconds in self._last.values():
                stages[stage] += seconds
            stages["other"] = max(0.0, process - sum(stages.values()))
        self.figures = {
            "process_cpu_percent": 100 * process / wall if wall > 0 else None,
            "stage_cpu_percent": None
            if stages is None
            else {stage: 100 * seconds / wall for stage, seconds in stages.items()},
            "cores": os.cpu_count(),
        }

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        for thread in threading.enumerate():
            stage = stage_of(thread.name)
            if stage is None or thread.native_id is None:
                continue
            seconds = thread_cpu_seconds(thread.native_id)
            if seconds is not None:
                self._last[thread.native_id] = (stage, seconds)
