"""The infer stage of :class:`~smokeclear.stream.graph.Graph`, one worker per engine.

The graph's watchdog (a hung or failing engine) and :meth:`Graph.switch_engine`
supersede the current worker with a new one; a superseded worker exits quietly, and
a frame uploaded by another engine than its own is shown raw (BYPASS).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from smokeclear.engines.base import Engine
from smokeclear.stream.frame import Frame
from smokeclear.stream.queues import END_OF_STREAM, QueueClosed

if TYPE_CHECKING:
    from smokeclear.stream.graph import Graph

log = logging.getLogger("smokeclear.stream.graph")


class InferWorker:
    """The infer stage. A watchdog can supersede it; a superseded worker exits quietly."""

    def __init__(self, graph: Graph, generation: int, engine: Engine | None) -> None:
        self.graph = graph
        self.generation = generation
        self.engine = engine  # None: make and start a fresh one first (recovery)
        self.busy_since_ns: int | None = None
        self.consecutive_failures = 0
        # The live-controls version this worker's engine has; -1: apply them before frame one.
        self.controls_version = -1
        self.thread = threading.Thread(target=self._run, name=f"infer-{generation}", daemon=True)

    @property
    def current(self) -> bool:
        return self.graph.infer_worker is self

    def _run(self) -> None:
        graph = self.graph
        if self.engine is None and not self._start_fresh_engine():
            return
        inbox, outbox = graph.to_infer, graph.to_postprocess
        while self.current:
            item = inbox.get()
            if item is END_OF_STREAM:
                if self.current:
                    outbox.close()
                return
            frame: Frame = item
            if frame.engine is not self.engine:
                # Uploaded by the engine this worker replaced: a frame is processed by one
                # engine from upload to download, so it is shown raw (BYPASS) instead.
                frame.engine = frame.tensor = None
                if graph.realtime:
                    continue
                try:
                    outbox.put(frame)
                except QueueClosed:
                    return
                continue
            frame.stamp("infer_start")
            self.busy_since_ns = frame.stamps["infer_start"]
            try:
                self._apply_live_controls()  # inside the watchdog's view: it may touch the GPU
                frame.tensor = self.engine.infer(frame.tensor)
                self.consecutive_failures = 0
            except Exception as error:
                self.consecutive_failures += 1
                graph.counters.infer_errors += 1
                if graph.counters.infer_errors in (1, 10) or graph.counters.infer_errors % 100 == 0:
                    log.error(
                        "inference failed (%d so far): %s", graph.counters.infer_errors, error
                    )
                frame.engine = frame.tensor = None
                if graph.realtime:
                    continue  # its deadline passes and the presenter shows the live frame
            finally:
                self.busy_since_ns = None
            if not self.current:
                return  # superseded while this frame ran: the new worker owns the output
            frame.stamp("infer_end")
            try:
                outbox.put(frame)
            except QueueClosed:
                return

    def _apply_live_controls(self) -> None:
        """Hand a changed detail gain to the engine (never raises: the frame still runs)."""
        controls = self.graph.controls
        version, gain = controls.snapshot()
        if version == self.controls_version:
            return
        self.controls_version = version
        if gain is None:
            return
        try:
            applied = self.engine.set_detail_gain(gain)
        except Exception as error:
            log.warning("could not change the detail gain to x%g: %s", gain, error)
            applied = False
        if not applied:
            controls.fix_detail_gain()
        else:
            log.debug("detail gain x%g from the next frame on", gain)

    def _start_fresh_engine(self) -> bool:
        graph = self.graph
        try:
            engine = graph.engine_factory()
            engine.start(graph.settings.height, graph.settings.width)
        except Exception as error:
            log.error("could not start a fresh engine: %s (the view stays in BYPASS)", error)
            return False
        if not self.current:
            engine.close()
            return False
        self.engine = engine
        graph.engine = engine
        log.warning("fresh engine %s running (generation %d)", engine.name, self.generation)
        return True
