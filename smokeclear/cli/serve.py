"""``smokeclear serve``: the operating-room display daemon (see docs/operations.md)."""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path

from smokeclear.errors import UserError

EXTRA_HINT = 'Install the daemon\'s extra: pip install "smokeclear[serve]".'


def add_parser(commands, verbose: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[verbose],
        help="run the OR display daemon: pipelines from a YAML file, an HTTP control API",
    )
    serve.add_argument(
        "--config", type=Path, required=True, help="the daemon's YAML (docs/operations.md)"
    )
    serve.add_argument("--host", help="address to bind (default: the file's, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: the file's, else 8600)")
    serve.add_argument(
        "--token-file",
        type=Path,
        help="file holding the API token (mode 600); needed to bind beyond 127.0.0.1",
    )


def command_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise UserError(
            f"smokeclear serve needs {error.name}, which is not installed", EXTRA_HINT
        ) from None
    from smokeclear.stream.serve.config import load_serve_config, with_overrides
    from smokeclear.stream.serve.daemon import Daemon

    config = with_overrides(load_serve_config(args.config), args.host, args.port, args.token_file)
    check_bindable(config.server.host, config.server.port)
    Daemon(config).serve()
    return 0


def check_bindable(host: str, port: int) -> None:
    """UserError when ``host:port`` cannot be bound (in use, no such address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UserError(
            f"cannot resolve --host {host}: {error.strerror}", "Use an IP address."
        ) from None
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            busy = error.errno == errno.EADDRINUSE
            raise UserError(
                f"cannot listen on {host}:{port}: {error.strerror}",
                "Another daemon holds it: stop it or choose another --port."
                if busy
                else "Use an address of this machine (ip -brief addr).",
            ) from None
