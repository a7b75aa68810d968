import threading
import time

import pytest

from smokeclear.stream.queues import END_OF_STREAM, BoundedQueue, Empty, Overflow, QueueClosed


def test_drop_oldest_keeps_the_newest_and_counts():
    queue = BoundedQueue("q", 2, Overflow.DROP_OLDEST)
    for item in range(5):
        assert queue.put(item)
    assert queue.drain() == [3, 4]
    assert queue.dropped == 3 and queue.high_water == 2


def test_drop_newest_refuses_when_full():
    queue = BoundedQueue("q", 1, Overflow.DROP_NEWEST)
    assert queue.put("a") and not queue.put("b")
    assert queue.get() == "a" and queue.dropped == 1


def test_block_loses_nothing_and_waits_for_room():
    queue = BoundedQueue("q", 2, Overflow.BLOCK)
    received = []

    def consume():
        while (item := queue.get()) is not END_OF_STREAM:
            received.append(item)
            time.sleep(0.001)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for item in range(50):
        queue.put(item)
    queue.close()
    consumer.join(5)
    assert received == list(range(50)) and queue.dropped == 0 and queue.high_water <= 2


def test_close_delivers_what_is_left_then_end_of_stream():
    queue = BoundedQueue("q", 3, Overflow.BLOCK)
    queue.put(1)
    queue.close()
    assert queue.get() == 1
    assert queue.get() is END_OF_STREAM
    assert queue.get(timeout=0) is END_OF_STREAM
    with pytest.raises(QueueClosed):
        queue.put(2)


def test_close_wakes_a_blocked_producer():
    queue = BoundedQueue("q", 1, Overflow.BLOCK)
    queue.put(1)
    outcome = []

    def produce():
        try:
            queue.put(2)
        except QueueClosed:
            outcome.append("closed")

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.05)
    queue.close()
    producer.join(2)
    assert outcome == ["closed"]


def test_get_times_out_and_wakeup_is_set():
    wakeup = threading.Event()
    queue = BoundedQueue("q", 1, Overflow.DROP_OLDEST, wakeup)
    with pytest.raises(Empty):
        queue.get(timeout=0.01)
    queue.put(1)
    assert wakeup.is_set()


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        BoundedQueue("q", 0, Overflow.BLOCK)
