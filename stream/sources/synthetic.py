"""The synthetic laparoscopic scene as a live source, paced like a camera.

Frame ``k`` is due at ``start + k / fps``, where ``start`` is the first ``read()``,
not ``open()``: whatever runs between the two (an engine build, an ONNX export) must
not eat the start of the scene, whose smoke plume is in its first seconds. A reader
that falls behind skips to the frame of the current time, as a real camera's frames
are lost while nobody reads them; ``live=False`` instead hands out every frame as
fast as asked (tests, benchmarks, offline rendering). ``loop_frames`` renders that
many frames at open and replays them: rendering a 1920x1080 frame takes about 30 ms
of CPU, so a benchmark at 60 fps would otherwise measure the renderer, not the graph.
"""

from __future__ import annotations

import time

import numpy as np

from smokeclear.synthetic.scene import LaparoscopicScene


class SyntheticSource:
    def __init__(
        self,
        width: int,
        height: int,
        fps: float = 30.0,
        seed: int = 0,
        live: bool = True,
        max_frames: int | None = None,
        loop_frames: int | None = None,
    ) -> None:
        self.width, self.height, self.fps, self.seed = width, height, fps, seed
        self.live = live
        self.max_frames = max_frames
        self.loop_frames = loop_frames
        self._loop: list[np.ndarray] = []
        self.name = f"synthetic:{seed}"
        self._scene: LaparoscopicScene | None = None
        self._next_index = 0
        self._start_ns: int | None = None  # set by the first read()
        self.skipped = 0

    def open(self) -> None:
        from smokeclear.errors import UserError

        try:
            self._scene = LaparoscopicScene(self.width, self.height, self.fps, self.seed)
        except ValueError as error:
            raise UserError(
                f"cannot make the synthetic scene: {error}",
                "Use a --size of at least 16x16 and a positive --fps.",
            ) from None
        if self.loop_frames:
            self._loop = [self._scene.render(index).smoky for index in range(self.loop_frames)]
        self._next_index = 0
        self._start_ns = None

    @property
    def scene(self) -> LaparoscopicScene:
        assert self._scene is not None, "source used before open()"
        return self._scene

    def read(self) -> np.ndarray | None:
        index = self._next_index
        if self.max_frames is not None and index >= self.max_frames:
            return None
        if self.live:
            if self._start_ns is None:
                self._start_ns = time.monotonic_ns()
            period_ns = 1e9 / self.fps
            due_ns = self._start_ns + int(index * period_ns)
            now = time.monotonic_ns()
            if now < due_ns:
                time.sleep((due_ns - now) / 1e9)
            elif now - due_ns > period_ns:
                current = int((now - self._start_ns) / period_ns)
                self.skipped += current - index
                index = current
        self._next_index = index + 1
        if self._loop:
            return self._loop[index % len(self._loop)]
        return self.scene.render(index).smoky

    def close(self) -> None:
        self._scene = None
        self._loop = []
