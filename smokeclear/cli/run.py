"""``smokeclear [run]``: the live, restored view of a source (the default command)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smokeclear.cli.options import detail_gain_option, engine_options, engine_request
from smokeclear.parsing import output_file, parse_size
from smokeclear.stream.live import DISPLAYS, RECONNECT, VIEWS


def add_parser(commands, verbose: argparse.ArgumentParser) -> None:
    run = commands.add_parser(
        "run",
        parents=[engine_options(), _detail_gain(), verbose],
        help="live restored view of a camera, stream or file (the default command)",
    )
    run.add_argument(
        "--source",
        default="synthetic",
        help="synthetic[:SEED] (default), /dev/videoN, a camera index, a video "
        "file, an image folder, or an rtsp:// / http(s):// URL",
    )
    run.add_argument(
        "--reconnect",
        choices=RECONNECT,
        default="never",
        help="a camera or stream that cannot connect at start: never (default) stops with "
        "the error; forever retries with backoff, showing NO SIGNAL, until it connects "
        "(it needs --size or takes the default size meanwhile). A lost stream is always "
        "retried",
    )
    run.add_argument(
        "--fps",
        type=float,
        help="frame-rate budget (default: 60 on a GPU, 15 on the CPU, or the camera's rate)",
    )
    run.add_argument(
        "--budget-ms", type=float, help="capture-to-display deadline (default: one frame period)"
    )
    run.add_argument(
        "--size",
        help="output WIDTHxHEIGHT (default: 1280x720 on a GPU, 640x360 "
        "on the CPU for the synthetic scene; the source's own size otherwise)",
    )
    run.add_argument(
        "--display",
        choices=DISPLAYS,
        default="auto",
        help="auto: a window when a desktop is available",
    )
    run.add_argument("--view", choices=VIEWS, default="processed")
    run.add_argument("--record", type=Path, help="record the shown view to this video file")
    run.add_argument(
        "--record-segment-seconds",
        type=float,
        metavar="N",
        help="with --record, start a new file every N seconds: case.mp4 becomes "
        "case-0001.mp4, case-0002.mp4, ...",
    )
    run.add_argument(
        "--min-free-gb",
        type=float,
        metavar="X",
        help="with --record, stop recording (the view goes on) when the disk has less than "
        "X GB free",
    )
    run.add_argument("--max-frames", type=int, help="stop after this many captured frames")
    run.add_argument(
        "--camera-format",
        choices=("MJPG", "YUYV", "NV12"),
        help="capture format to ask a camera for",
    )
    run.add_argument("--json", type=output_file, help="also write the run report as JSON here")


def _detail_gain() -> argparse.ArgumentParser:
    return detail_gain_option(
        " (1 shows the frame, above 1 sharpens); in the window, [ and ] change K live by 0.5"
    )


def command_run(args: argparse.Namespace) -> int:
    from smokeclear.stream.live import LiveSettings, bypass_hint, device_defaults, run_live

    defaults = device_defaults(args.backend, args.device)
    size = parse_size(args.size) if args.size else None
    settings = LiveSettings(
        source=args.source,
        reconnect=args.reconnect,
        request=engine_request(args, defaults),
        defaults=defaults,
        size=size,
        fps=args.fps,
        budget_ms=args.budget_ms,
        display=args.display,
        view=args.view,
        record=args.record,
        max_frames=args.max_frames,
        camera_format=args.camera_format,
        record_segment_seconds=args.record_segment_seconds,
        min_free_gb=args.min_free_gb,
    )
    report = run_live(settings)
    print(report.format())
    hint = bypass_hint(report)
    if hint:
        print(f"hint: {hint}")
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 0
