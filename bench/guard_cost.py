"""Cost per frame of the output guard (:mod:`smokeclear.engines.output_guard`).

``smokeclear bench guard-cost`` times, per frame size, each way the guard runs:
the torch reduction on a restorer output ``(1, 3, H, W)`` float32 (on the CPU, and
on the GPU when there is one: the six numbers' copy to the host waits for it),
the numpy version on the same output (onnxruntime's restorer models) and on a
``(H, W, 3)`` uint8 frame (frame models), and the statistics of the input frame
plus the rule itself, which every guarded frame also pays. Median wall
milliseconds per frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from smokeclear.bench.engine_speed import write_results


def median_ms(work: Callable[[], object], frames: int) -> float:
    work()  # first use: allocations, lazy imports
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def guard_costs(height: int, width: int, frames: int) -> dict[str, float]:
    """Median ms per frame of each implementation at ``height x width``."""
    import torch

    from smokeclear.engines.output_guard import device_range, host_range, judge

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    output = rng.uniform(0, 1, (1, 3, height, width)).astype(np.float32)
    reference = host_range(image, height, width)
    tensor = torch.from_numpy(output)
    costs = {
        "torch_cpu_ms": median_ms(lambda: device_range(tensor, height, width), frames),
        "numpy_float_ms": median_ms(lambda: host_range(output, height, width), frames),
        "numpy_uint8_ms": median_ms(lambda: host_range(image, height, width), frames),
        "input_and_rule_ms": median_ms(
            lambda: judge(reference, host_range(image, height, width)), frames
        ),
    }
    if torch.cuda.is_available():
        on_gpu = tensor.cuda()
        costs["torch_cuda_ms"] = median_ms(lambda: device_range(on_gpu, height, width), frames)
    return costs


def print_guard_cost(sizes: list[tuple[int, int]], frames: int, json_path: Path | None) -> int:
    """``smokeclear bench guard-cost``: one line per size; the rows as JSON."""
    rows = []
    for width, height in sizes:
        costs = guard_costs(height, width, frames)
        rows.append({"size": f"{width}x{height}", "frames": frames, **costs})
        print(
            f"output guard at {width}x{height}: "
            + ", ".join(f"{name[:-3]} {value:.3f} ms" for name, value in costs.items())
            + f" (median per frame, {frames} frames)"
        )
    if json_path:
        write_results(json_path, rows)
    return 0
