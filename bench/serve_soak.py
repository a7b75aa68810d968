"""Soak of ``smokeclear serve``: memory, CPU and HTTP answers over a long run.

Starts the daemon as a child process with two synthetic pipelines, watches one
preview (curl, a separate process), scrapes ``/metrics``, ``/readyz`` and
``/api/pipelines`` once a second, and samples the daemon's RSS and CPU time from
/proc every ``--sample-s``. Prints a table and writes JSON::

    python -m smokeclear.bench.serve_soak --minutes 10 --json bench/results/cpu/serve-soak.json

Memory is "flat" when the RSS slope after the warm-up minute is within noise; every
HTTP answer is counted by status (the target: no 5xx).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import yaml

SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
TOKEN = "soak-token-0123456789abcdef"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(folder: Path, size: str, fps: float, backend: str) -> Path:
    token = folder / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    (folder / "rec").mkdir()
    pipeline = {"source": "synthetic", "size": size, "fps": fps, "backend": backend}
    record = {"dir": str(folder / "rec"), "segment_seconds": 60, "min_free_gb": 1}
    config = {
        "server": {"host": "127.0.0.1", "port": 0, "token_file": str(token)},
        "pipelines": [
            {"name": "scope1", **pipeline, "record": record | {"delete_oldest": True}},
            {"name": "scope2", **pipeline | {"source": "synthetic:7"}},
        ],
    }
    path = folder / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="serve-soak-"))
    config = write_config(folder, args.size, args.fps, args.backend)
    log_path = folder / "serve.log"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "smokeclear", "serve", "--config", str(config)],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    statuses: Counter[int] = Counter()
    preview = None
    try:
        port = None
        while port is None:
            if daemon.poll() is not None:
                raise SystemExit(f"serve exited: {log_path.read_text()}")
            found = SERVING.search(log_path.read_text())
            port = int(found.group(1)) if found else None
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        client = httpx.Client(base_url=base, headers=headers, timeout=10)
        while client.get("/readyz").status_code != 200:
            time.sleep(0.5)
        auth = f"Authorization: Bearer {TOKEN}"
        url = f"{base}/api/pipelines/scope1/preview.mjpg"
        preview = subprocess.Popen(["curl", "-sN", "-H", auth, "-o", "/dev/null", url])
        stop = threading.Event()

        def scrape() -> None:
            while not stop.wait(1.0):
                for path in ("/metrics", "/readyz", "/api/pipelines"):
                    try:
                        statuses[client.get(path).status_code] += 1
                    except httpx.HTTPError:
                        statuses[-1] += 1  # no answer at all

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        started = time.monotonic()
        cpu_start = cpu_seconds(daemon.pid)
        samples = []
        end = started + args.minutes * 60
        while True:
            now = time.monotonic()
            samples.append(
                {
                    "t_s": round(now - started, 1),
                    "rss_mb": round(rss_mb(daemon.pid), 1),
                    "cpu_cores": round(
                        (cpu_seconds(daemon.pid) - cpu_start) / max(1e-9, now - started), 3
                    ),
                }
            )
            print(f"{samples[-1]['t_s']:7.1f} s  RSS {samples[-1]['rss_mb']:7.1f} MB", flush=True)
            if now >= end:
                break
            time.sleep(min(args.sample_s, max(0.0, end - now)))
        stop.set()
        scraper.join()
        pipelines = client.get("/api/pipelines").json()["pipelines"]
        metrics = client.get("/metrics").text
        client.close()
    finally:
        if preview is not None:
            preview.terminate()
            preview.wait()
        daemon.send_signal(signal.SIGTERM)
        exit_status = daemon.wait(60)
    after_warmup = [s for s in samples if s["t_s"] >= 60] or samples
    times = np.array([s["t_s"] for s in after_warmup]) / 60
    rss = np.array([s["rss_mb"] for s in after_warmup])
    slope = float(np.polyfit(times, rss, 1)[0]) if len(rss) > 2 else float("nan")
    captured = {
        name: float(value)
        for name, value in re.findall(
            r'smokeclear_frames_captured_total\{pipeline="(\w+)"\} (\S+)', metrics
        )
    }
    result = {
        "command": " ".join(["python -m smokeclear.bench.serve_soak", *(argv or sys.argv[1:])]),
        "minutes": args.minutes,
        "size": args.size,
        "fps": args.fps,
        "backend": args.backend,
        "rss_mb_first_after_warmup": float(rss[0]),
        "rss_mb_last": float(rss[-1]),
        "rss_mb_max": float(max(s["rss_mb"] for s in samples)),
        "rss_slope_mb_per_min_after_warmup": round(slope, 3),
        "daemon_cpu_cores": samples[-1]["cpu_cores"],
        "http_statuses": dict(statuses),
        "http_5xx": sum(n for code, n in statuses.items() if code >= 500),
        "exit_status": exit_status,
        "frames_captured": captured,
        "pipelines": [
            {key: p[key] for key in ("name", "mode", "fps", "latency_ms", "restarts", "error")}
            for p in pipelines
        ],
        "samples": samples,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if exit_status == 0 and result["http_5xx"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
