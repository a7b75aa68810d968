"""What ``smokeclear serve`` adds to the live path, against ``smokeclear run`` on the
same source: capture-to-display latency (p50/p99, from the graph's own latency log),
process CPU, and the preview's CPU.

Three arms, interleaved ``--repeats`` times so drift on a shared machine hits each
alike, in this process:

* ``run``: :func:`~smokeclear.stream.live.run_live`, as ``smokeclear run --display none``;
* ``serve``: the daemon (:class:`~smokeclear.stream.serve.daemon.Daemon`, its HTTP
  server included) with one pipeline of the same settings, no client;
* ``serve+preview``: the same with one MJPEG preview watched and ``/metrics`` scraped
  once a second (curl, separate processes: their CPU is not counted).

Then the per-frame cost of what the daemon adds on the presenter thread (preview
tap, recording switch, two histogram observations), timed directly::

    python -m smokeclear.bench.serve_overhead --seconds 40 --repeats 2 \\
        --json bench/results/cpu/serve-overhead.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from smokeclear.stream.stats import percentiles

TOKEN = "overhead-token-0123456789abcdef"
STAGES = ("end to end, processed", "end to end, bypass")


def summary(samples: dict[str, list[int]], cpu_s: float, wall_s: float) -> dict:
    out: dict = {"cpu_cores": round(cpu_s / wall_s, 3)}
    for name in STAGES:
        p = percentiles(samples.get(name, []))
        out[name] = {"n": p.count, "p50_ms": round(p.p50, 3), "p99_ms": round(p.p99, 3)}
    return out


def run_arm(args) -> dict:
    from smokeclear.registry import parse_chain
    from smokeclear.runtime import EngineRequest
    from smokeclear.stream.live import DEVICE_DEFAULTS, LiveSettings, run_live

    width, height = (int(v) for v in args.size.split("x"))
    request = EngineRequest(
        restorers=tuple(parse_chain(args.restorer)), backend=args.backend, work_scale=0.5
    )
    settings = LiveSettings(
        source="synthetic",
        request=request,
        defaults=DEVICE_DEFAULTS["cpu"],
        size=(width, height),
        fps=args.fps,
        display="none",
        max_frames=round(args.seconds * args.fps),
    )
    graphs = []
    wall, cpu = time.monotonic(), time.process_time()
    run_live(settings, on_graph=graphs.append)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    latency = graphs[0].latency
    return summary({name: latency.samples(name) for name in STAGES}, cpu, wall)


def serve_arm(args, folder: Path, preview: bool) -> dict:
    from smokeclear.stream.serve.config import load_serve_config
    from smokeclear.stream.serve.daemon import Daemon

    token = folder / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    pipeline = {
        "name": "or1",
        "source": "synthetic",
        "size": args.size,
        "fps": args.fps,
        "backend": args.backend,
        "restorer": args.restorer,
        "work_scale": "0.5",
    }
    config = folder / "serve.yaml"
    server = {"host": "127.0.0.1", "port": 0, "token_file": str(token)}
    config.write_text(yaml.safe_dump({"server": server, "pipelines": [pipeline]}))
    daemon = Daemon(load_serve_config(config))
    daemon.start()
    clients: list[subprocess.Popen] = []
    stop = threading.Event()
    try:
        while not daemon.pipelines.get("or1").showing:
            time.sleep(0.1)
        base = f"http://127.0.0.1:{daemon.port}"
        if preview:
            auth = f"Authorization: Bearer {TOKEN}"
            url = f"{base}/api/pipelines/or1/preview.mjpg"
            clients.append(subprocess.Popen(["curl", "-sN", "-H", auth, "-o", "/dev/null", url]))

            def scrape() -> None:
                while not stop.wait(1.0):
                    subprocess.run(["curl", "-s", "-o", "/dev/null", f"{base}/metrics"])

            threading.Thread(target=scrape, daemon=True).start()
        graph = daemon.pipelines.get("or1").graph
        before = {name: len(graph.latency.samples(name)) for name in STAGES}
        wall, cpu = time.monotonic(), time.process_time()
        time.sleep(args.seconds)
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        samples = {name: graph.latency.samples(name)[before[name] :] for name in STAGES}
        return summary(samples, cpu, wall)
    finally:
        stop.set()
        for client in clients:
            client.terminate()
            client.wait()
        daemon.close()


def hook_cost_us(width: int, height: int, iterations: int = 20_000) -> dict[str, float]:
    """What the daemon adds to the presenter thread per shown view (preview tap,
    recording switch and its alert, two histogram observations), timed one view at a
    time: p50 / p99 / max in microseconds; and one preview JPEG's encoding in ms."""
    from smokeclear.stream.serve.app import encode_preview
    from smokeclear.stream.serve.metrics import Metrics
    from smokeclear.stream.serve.pipelines import PreviewTap, RecordingSwitch

    view = np.zeros((height, width, 3), np.uint8)
    tap, recording, metrics = PreviewTap(), RecordingSwitch("or1", None), Metrics()
    times_ns = np.empty(iterations, np.int64)
    clock = time.perf_counter_ns
    for index in range(iterations):
        start = clock()
        tap.write(view)
        recording.write(view)
        _ = recording.alert  # the graph reads every sink's alert per view
        metrics.observe_latency("or1", "end to end, processed", 0.01)
        metrics.observe_latency("or1", "infer", 0.01)
        times_ns[index] = clock() - start
    p50, p99 = np.percentile(times_ns / 1e3, [50, 99])
    frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    start = clock()
    for _ in range(50):
        encode_preview(frame, 640)
    return {
        "presenter_hooks_us_p50": round(float(p50), 2),
        "presenter_hooks_us_p99": round(float(p99), 2),
        "presenter_hooks_us_max": round(float(times_ns.max() / 1e3), 2),
        "preview_jpeg_ms": round((clock() - start) / 50 / 1e6, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--restorer", default="desmoke")
    parser.add_argument("--hooks-size", default="1920x1080", help="view size of the hook timing")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    arms: dict[str, list[dict]] = {"run": [], "serve": [], "serve+preview": []}
    for repeat in range(args.repeats):
        for arm in arms:
            with tempfile.TemporaryDirectory() as folder:
                if arm == "run":
                    result = run_arm(args)
                else:
                    result = serve_arm(args, Path(folder), preview=arm == "serve+preview")
            arms[arm].append(result)
            print(f"repeat {repeat + 1} {arm:14} {json.dumps(result)}", flush=True)
    width, height = (int(v) for v in args.hooks_size.split("x"))
    result = {
        "command": " ".join(["python -m smokeclear.bench.serve_overhead", *(argv or sys.argv[1:])]),
        "arms": arms,
        "hooks": hook_cost_us(width, height),
    }
    print(json.dumps(result["hooks"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
