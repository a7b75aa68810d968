"""``smokeclear restore``: an image, a folder of images or a video, offline, every frame."""

from __future__ import annotations

import argparse
from pathlib import Path

from smokeclear.cli.options import detail_gain_option, engine_options, engine_request


def add_parser(commands, verbose: argparse.ArgumentParser) -> None:
    gain = detail_gain_option(
        ", fixed for every frame (live, in the window of `smokeclear run`, [ and ] change it)"
    )
    restore = commands.add_parser(
        "restore",
        parents=[engine_options(), gain, verbose],
        help="restore an image, a folder of images or a video file, offline, every frame",
    )
    restore.add_argument("input", type=Path)
    restore.add_argument(
        "output",
        type=Path,
        help=".png/.tif for an image, a folder for a folder, a video file "
        "(.mp4, .mkv, .mov, .m4v) for a video",
    )


def command_restore(args: argparse.Namespace) -> int:
    import dataclasses

    from smokeclear.restore import restore
    from smokeclear.stream.live import device_defaults

    # Offline there is no frame deadline: full resolution on every device unless
    # --work-scale says otherwise (the live CPU default of 0.5 holds a frame rate).
    defaults = dataclasses.replace(device_defaults(args.backend, args.device), work_scale=1.0)
    restore(args.input, args.output, engine_request(args, defaults))
    return 0
