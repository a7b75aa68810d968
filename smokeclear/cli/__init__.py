"""The ``smokeclear`` command line.

``smokeclear [run]`` shows a live, restored view of a source (the default
command); ``restore`` processes files offline; ``train``, ``eval`` and ``export``
serve the ML engineer; ``engines`` manages the TensorRT cache; ``bench`` measures; ``serve`` runs
the operating-room display daemon.
One module per command, each adding its parser and holding its handler. Errors the
user can fix print one line with the fix and exit with status 2; nothing prints a
traceback for them.
"""

from __future__ import annotations

import logging
import sys

from smokeclear import __version__
from smokeclear.cli import bench, engines, export, restore, run, serve, train
from smokeclear.cli.bench import bench_config
from smokeclear.cli.logs import configure_logging, quiet_native_logs
from smokeclear.cli.options import Parser, verbose_options
from smokeclear.errors import UserError
from smokeclear.parsing import parse_size, parse_weights, parse_work_scale

__all__ = [
    "bench_config",
    "build_parser",
    "main",
    "parse_size",
    "parse_weights",
    "parse_work_scale",
]

HANDLERS = {
    "run": run.command_run,
    "restore": restore.command_restore,
    "train": train.command_train,
    "eval": train.command_eval,
    "export": export.command_export,
    "engines": engines.command_engines,
    "bench": bench.command_bench,
    "serve": serve.command_serve,
}
COMMANDS = tuple(HANDLERS)


def build_parser() -> Parser:
    parser = Parser(
        prog="smokeclear",
        description="Real-time surgical video desmoking. `smokeclear` alone runs the live "
        "view on the built-in synthetic scene; `smokeclear run --help` lists its options.",
    )
    parser.add_argument("--version", action="version", version=f"smokeclear {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)
    verbose = verbose_options()
    run.add_parser(commands, verbose)
    restore.add_parser(commands, verbose)
    train.add_parsers(commands, verbose)
    export.add_parser(commands, verbose)
    engines.add_parser(commands, verbose)
    bench._bench_parser(commands)
    serve.add_parser(commands, verbose)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_native_logs("-v" in argv or "--verbose" in argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    handler = None
    try:
        args = build_parser().parse_args(argv)
        handler = configure_logging(getattr(args, "verbose", False))
        return HANDLERS[args.command](args)
    except UserError as error:
        print(f"smokeclear: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("smokeclear: interrupted", file=sys.stderr)
        return 130
    finally:
        if handler is not None:
            logging.getLogger("smokeclear").removeHandler(handler)
