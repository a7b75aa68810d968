"""Bounded queues with a named overflow policy and an explicit end of stream.

Every queue between stages is one of these, so latency can never build up
unnoticed: a live graph drops the oldest frame and counts it; an offline graph
blocks the producer and loses nothing. A producer ends the stream by closing the
queue; the consumer then receives the items left and :data:`END_OF_STREAM`.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Overflow(enum.Enum):
    DROP_OLDEST = "drop_oldest"  # live: the newest item always gets in
    DROP_NEWEST = "drop_newest"  # the incoming item is refused when full
    BLOCK = "block"  # offline: the producer waits; nothing is lost


class _EndOfStream:
    def __repr__(self) -> str:
        return "END_OF_STREAM"


END_OF_STREAM = _EndOfStream()


class QueueClosed(RuntimeError):
    """put() on a closed queue."""


class Empty(TimeoutError):
    """get() timed out with nothing to return."""


class BoundedQueue(Generic[T]):
    """A thread-safe FIFO of at most ``capacity`` items.

    Args:
        name: shown in statistics (``"capture->preprocess"``).
        capacity: maximum items held.
        overflow: what ``put`` does when full.
        wakeup: optional event set on every put and on close, so one consumer can
            wait on several queues.
    """

    def __init__(
        self, name: str, capacity: int, overflow: Overflow, wakeup: threading.Event | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self.overflow = overflow
        self._items: deque[T] = deque()
        self._closed = False
        self._condition = threading.Condition()
        self._wakeup = wakeup
        self.dropped = 0
        self.high_water = 0
        self.put_count = 0

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add ``item``. Returns False when it was refused (DROP_NEWEST, or a BLOCK timeout).

        Raises:
            QueueClosed: the queue was closed (by the producer side or a shutdown).
        """
        with self._condition:
            if self._closed:
                raise QueueClosed(f"queue {self.name} is closed")
            if len(self._items) >= self.capacity:
                if self.overflow is Overflow.DROP_OLDEST:
                    self._items.popleft()
                    self.dropped += 1
                elif self.overflow is Overflow.DROP_NEWEST:
                    self.dropped += 1
                    return False
                else:
                    has_room = self._condition.wait_for(
                        lambda: self._closed or len(self._items) < self.capacity, timeout
                    )
                    if self._closed:
                        raise QueueClosed(f"queue {self.name} is closed")
                    if not has_room:
                        return False
            self._items.append(item)
            self.put_count += 1
            self.high_water = max(self.high_water, len(self._items))
            self._condition.notify_all()
        if self._wakeup is not None:
            self._wakeup.set()
        return True

    def get(self, timeout: float | None = None) -> T | _EndOfStream:
        """The oldest item; :data:`END_OF_STREAM` once closed and empty.

        Raises:
            Empty: nothing arrived within ``timeout`` seconds.
        """
        with self._condition:
            ready = self._condition.wait_for(lambda: self._items or self._closed, timeout)
            if self._items:
                item = self._items.popleft()
                self._condition.notify_all()
                return item
            if self._closed:
                return END_OF_STREAM
            assert not ready
            raise Empty(f"nothing in {self.name} after {timeout} s")

    def drain(self) -> list[T]:
        """Everything queued now, oldest first, without waiting."""
        with self._condition:
            items = list(self._items)
            self._items.clear()
            self._condition.notify_all()
            return items

    def close(self) -> None:
        """End of stream: consumers get what is left, then END_OF_STREAM."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._wakeup is not None:
            self._wakeup.set()

    def __len__(self) -> int:
        with self._condition:
            return len(self._items)
