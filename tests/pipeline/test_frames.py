"""The reader -> main-thread hand-off: batches gather as frames arrive, never wait past their
deadline, and keep order."""

from __future__ import annotations

import queue
import threading
import time

from vms.pipeline.frames import get_batch


def producer(q: queue.Queue[int], items: list[int], every: float) -> threading.Thread:
    def run() -> None:
        for item in items:
            time.sleep(every)
            q.put(item)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_empty_queue_returns_nothing_after_the_timeout() -> None:
    q: queue.Queue[int] = queue.Queue(maxsize=4)
    started = time.monotonic()
    assert get_batch(q, 4, timeout=0.1, gather_s=1.0) == []
    assert 0.09 <= time.monotonic() - started < 0.5


def test_without_gathering_a_batch_is_what_is_queued() -> None:
    q: queue.Queue[int] = queue.Queue(maxsize=8)
    for i in range(3):
        q.put(i)
    assert get_batch(q, 1, timeout=0.1) == [0]
    assert get_batch(q, 8, timeout=0.1) == [1, 2]


def test_a_batch_gathers_frames_as_they_arrive_in_order() -> None:
    q: queue.Queue[int] = queue.Queue(maxsize=8)
    producer(q, [1, 2, 3, 4, 5], every=0.04)
    started = time.monotonic()
    batch = get_batch(q, 4, timeout=1.0, gather_s=1.0)
    elapsed = time.monotonic() - started
    assert batch == [1, 2, 3, 4]
    assert elapsed < 0.5  # returned as soon as four were there, not at the deadline
    assert get_batch(q, 4, timeout=1.0) == [5]


def test_gathering_stops_at_its_deadline() -> None:
    q: queue.Queue[int] = queue.Queue(maxsize=8)
    producer(q, [1, 2], every=0.02)
    batch = get_batch(q, 4, timeout=1.0, gather_s=0.15)
    assert batch == [1, 2]


def test_taking_a_batch_frees_room_for_a_blocked_producer() -> None:
    q: queue.Queue[int] = queue.Queue(maxsize=2)
    q.put(1)
    q.put(2)
    done = threading.Event()

    def put_third() -> None:
        q.put(3, timeout=2.0)
        done.set()

    threading.Thread(target=put_third, daemon=True).start()
    assert get_batch(q, 2, timeout=0.1) == [1, 2]
    assert done.wait(1.0)
    assert get_batch(q, 2, timeout=0.1) == [3]
