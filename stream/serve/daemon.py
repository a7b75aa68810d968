"""The daemon: the pipelines, the HTTP server, signals and systemd in one process.

``SIGTERM`` / ``SIGINT``: stop serving, stop every pipeline (recordings finalised),
exit 0. ``SIGHUP``: read the config again; pipelines whose settings did not change
keep running, changed ones restart, removed ones stop, new ones start. A config
that fails to load leaves everything as it was (the error is logged).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from smokeclear.errors import UserError
from smokeclear.stream.serve import systemd
from smokeclear.stream.serve.app import create_app
from smokeclear.stream.serve.config import ServeConfig, load_serve_config, read_token
from smokeclear.stream.serve.metrics import Metrics
from smokeclear.stream.serve.pipelines import Pipelines

log = logging.getLogger(__name__)


class Daemon:
    """Everything ``smokeclear serve`` runs, for a checked ``config``."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.token = read_token(config.server, config.path)
        self.metrics = Metrics()
        self.pipelines = Pipelines(self.metrics.observe_latency)
        self.metrics.watch(self.pipelines)
        self.closing = threading.Event()
        self.reload_requested = threading.Event()
        self.app = create_app(config.server, self.token, self.pipelines, self.metrics, self.closing)
        self.server = _Server(self)
        self._thread: threading.Thread | None = None
        self._reloader = threading.Thread(target=self._reload_loop, name="reload", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (``server.port: 0`` picks a free one)."""
        return self.server.servers[0].sockets[0].getsockname()[1]

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT (call on the main thread: it takes the signals)."""
        self.pipelines.apply(self.config.pipelines)
        self._reloader.start()
        try:
            self.server.run()
        finally:
            self.close()

    def start(self) -> None:
        """Serve from a background thread (tests); :meth:`close` stops it."""
        self.pipelines.apply(self.config.pipelines)
        self._reloader.start()
        self._thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start (see the log)")
            self._thread.join(0.02)

    def close(self) -> None:
        """Stop serving and stop every pipeline, finalising recordings."""
        if not self.closing.is_set():
            systemd.notify("STOPPING=1")
            log.info("stopping: finishing recordings")
        self.closing.set()
        self.reload_requested.set()  # wakes the reloader, which sees closing
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.pipelines.stop_all()

    def reload(self) -> dict[str, list[str]]:
        """Apply the config file as it is now to the pipelines (SIGHUP)."""
        config = load_serve_config(self.config.path)
        if config.server != self.config.server:
            log.warning("reload: the server section changed; restart the daemon to apply it")
        changes = self.pipelines.apply(config.pipelines)
        self.config = ServeConfig(self.config.server, config.pipelines, config.path)
        log.info(
            "reloaded %s: %s",
            config.path,
            "; ".join(f"{what} {', '.join(names)}" for what, names in changes.items() if names),
        )
        return changes

    def _reload_loop(self) -> None:
        while True:
            self.reload_requested.wait()
            self.reload_requested.clear()
            if self.closing.is_set():
                return
            try:
                self.reload()
            except UserError as error:
                log.error("reload failed, keeping the running pipelines: %s", error)


class _Server(uvicorn.Server):
    """uvicorn with the daemon's signals and systemd notifications."""

    def __init__(self, daemon: Daemon) -> None:
        server = daemon.config.server
        config = uvicorn.Config(
            daemon.app,
            host=server.host,
            port=server.port,
            log_level="warning",
            access_log=False,
            # An open MJPEG preview never ends by itself: do not wait for it long.
            timeout_graceful_shutdown=2,
            # Far above what a control page and monitoring use; previews have their own cap.
            limit_concurrency=256,
        )
        super().__init__(config)
        self.daemon = daemon

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own handlers re-raise SIGTERM once it has shut down, so the process
        # would die by the signal (status 143) before the recordings are finalised;
        # here SIGTERM and SIGINT only end the serving, and SIGHUP asks for a reload.
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(number: int, _: FrameType | None) -> None:
            log.info("%s: stopping", signal.Signals(number).name)
            systemd.notify("STOPPING=1")
            self.should_exit = True
            self.daemon.closing.set()

        def reload(number: int, _: FrameType | None) -> None:
            log.info("SIGHUP: reloading %s", self.daemon.config.path)
            self.daemon.reload_requested.set()

        handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: reload}
        previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        host = self.daemon.config.server.host
        log.info("serving on http://%s:%d", host, self.daemon.port)
        systemd.notify("READY=1")
        interval = systemd.watchdog_interval_s()
        if interval is not None:
            self._watchdog = asyncio.create_task(self._ping_watchdog(interval))

    async def _ping_watchdog(self, interval: float) -> None:
        """While the event loop runs, systemd hears from it; a hung loop is restarted."""
        while not self.should_exit:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
