"""``sd_notify`` for a ``Type=notify`` systemd unit, with the socket module only.

systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace)
and, with ``WatchdogSec=``, ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``). The daemon
sends ``READY=1`` once it serves, ``WATCHDOG=1`` at half the watchdog period while
its event loop runs (a hung daemon stops pinging and systemd restarts it), and
``STOPPING=1`` when it shuts down. Outside systemd every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not run by it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block: this runs on the event loop and in signal handlers, and a
            # reader that stopped reading must not stop the daemon.
            sock.setblocking(False)
            sock.connect(address)
            sock.send(state.encode())
    except OSError as error:
        log.warning("sd_notify %s to %s failed: %s", state, address.lstrip("\0"), error)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """How often to send ``WATCHDOG=1`` (half of ``WatchdogSec``); None without one."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2e6)
    except ValueError:
        return None
