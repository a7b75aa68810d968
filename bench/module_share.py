"""Where a restorer's frame time goes: each top-level submodule's share of a forward pass.

``smokeclear bench module-share --restorer lowlight --size 640x360`` times the
shipped network in eager PyTorch on the CPU; ``--device cuda --half`` times it in FP16
on the GPU (lowlight's target, its recurrent scan under 25 % of the frame time, is
the ``rnn`` row at 1920x1080). The whole frame is timed without hooks; each submodule is timed
by forward hooks that synchronise the device before reading the clock, so its
figure includes no queued work of other modules. Medians over ``--iterations``
after ``--warmup`` passes.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smokeclear.engines.base import padded_size


def module_share(
    restorer: str,
    width: int,
    height: int,
    device: str = "cpu",
    half: bool = False,
    iterations: int = 10,
    warmup: int = 2,
) -> dict[str, Any]:
    """``{"restorer", "size", "device", "dtype", "frame_ms", "modules": {name: {ms, share}}}``."""
    import torch

    from smokeclear.nets.loading import load_restorer
    from smokeclear.registry import get_restorer

    dtype = torch.float16 if half else torch.float32
    module = load_restorer(get_restorer(restorer)).eval().to(device=device, dtype=dtype)
    multiple = module.input_multiple
    padded = padded_size(height, width, multiple)
    image = torch.rand(1, 3, *padded, device=device, dtype=dtype)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    def run() -> None:
        with torch.inference_mode():
            module(image)

    frame_ms = _median_ms(run, sync, iterations, warmup)
    spent: dict[str, list[float]] = {name: [] for name, _ in module.named_children()}
    started: dict[str, float] = {}
    handles = []
    for name, child in module.named_children():

        def before(_module, _inputs, name=name) -> None:
            sync()
            started[name] = time.perf_counter()

        def after(_module, _inputs, _output, name=name) -> None:
            sync()
            spent[name].append((time.perf_counter() - started[name]) * 1e3)

        handles += [child.register_forward_pre_hook(before), child.register_forward_hook(after)]
    try:
        for _ in range(warmup):
            run()
        for times in spent.values():
            times.clear()
        for _ in range(iterations):
            run()
    finally:
        for handle in handles:
            handle.remove()
    modules = {}
    for name, times in spent.items():
        if times:  # children that forward() never calls directly are left out
            calls = len(times) // iterations
            per_frame = [sum(times[i : i + calls]) for i in range(0, len(times), calls)]
            ms = statistics.median(per_frame)
            modules[name] = {"ms": ms, "share": ms / frame_ms}
    return {
        "restorer": restorer,
        "size": f"{width}x{height}",
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "frame_ms": frame_ms,
        "modules": modules,
    }


def _median_ms(
    run: Callable[[], None], sync: Callable[[], None], iterations: int, warmup: int
) -> float:
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def print_module_share(
    restorer: str,
    sizes: list[tuple[int, int]],
    device: str,
    half: bool,
    iterations: int,
    warmup: int,
    json_path: Path | None,
) -> int:
    """``smokeclear bench module-share``: each submodule's share per size; rows as JSON."""
    rows = []
    for width, height in sizes:
        row = module_share(restorer, width, height, device, half, iterations, warmup)
        rows.append(row)
        print(
            f"{row['restorer']} {row['size']} on {row['device']} ({row['dtype']}): "
            f"{row['frame_ms']:.2f} ms per frame"
        )
        for name, entry in row["modules"].items():
            print(f"  {name:12s} {entry['ms']:9.2f} ms  {entry['share']:6.1%}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=2))
    return 0
