"""The hand-off between a worker's reader thread and its main thread: a bounded queue of
decoded frames that the main thread can take in small batches.

Masking and encoding a frame right after an idle gap costs noticeably more CPU than doing the
same work back to back (caches and branch predictors went cold meanwhile; on this 2-core
machine a frame paced at 25 fps costs ~20-35 % more than in a tight loop, bench/results). When
nobody watches live, latency does not matter: a recording camera can let a few frames gather and
put them through mask -> encode in one go. Frames keep the timestamps they were decoded at, so
recordings are timed exactly as without batching.
"""

from __future__ import annotations

import queue
import time
from typing import TypeVar

T = TypeVar("T")


def get_batch(q: queue.Queue[T], size: int, timeout: float, gather_s: float = 0.0) -> list[T]:
    """Up to `size` items of `q`: waits at most `timeout` for the first one (none: empty
    list), then up to `gather_s` more until `size` items are queued; returns what is there.

    Works on a plain `queue.Queue` (its own lock and conditions), so the reader keeps using
    `put_nowait` and other workers keep using `get`.
    """
    items: list[T] = []
    with q.not_empty:
        end = time.monotonic() + timeout
        while not q._qsize():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return items
            q.not_empty.wait(remaining)
        if gather_s > 0 and size > 1:
            gather_until = time.monotonic() + gather_s
            while q._qsize() < size:
                remaining = gather_until - time.monotonic()
                if remaining <= 0:
                    break
                q.not_empty.wait(remaining)
        while q._qsize() and len(items) < size:
            items.append(q._get())
        q.not_full.notify(len(items))
    return items
