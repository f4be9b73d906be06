"""Who is watching: single-use live-view tickets and playback viewing sessions.

Both are per API process, in memory. A ticket used in one process could be used once more in
another (several API processes behind one balancer): the ticket is still bound to its user and
token, expires within a minute, and every use is audited. A restarted process audits the next
request of every viewer again: more entries, never fewer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.responses import FileResponse

VIEWING_WINDOW_S = 900.0


class UsedTickets:
    """Ticket ids already spent, until they would have expired anyway."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}

    def spend(self, ticket_id: str, expires_at: float) -> bool:
        """True the first time `ticket_id` is presented, False ever after."""
        now = self._clock()
        with self._lock:
            if len(self._used) > 1000:
                self._used = {k: v for k, v in self._used.items() if v > now}
            if ticket_id in self._used:
                return False
            self._used[ticket_id] = expires_at
            return True


class ViewingSessions:
    """Playback is audited once per viewer, segment and window, whatever Range header the
    player sends: the first request of a viewer for a segment starts a viewing session."""

    def __init__(
        self, window_s: float = VIEWING_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, int], float] = {}

    def starts(self, user_id: int, segment_id: int) -> bool:
        """Whether this request starts a new viewing session (and must be audited)."""
        now = self._clock()
        key = (user_id, segment_id)
        with self._lock:
            if len(self._seen) > 10_000:
                horizon = now - self.window_s
                self._seen = {k: t for k, t in self._seen.items() if t > horizon}
            last = self._seen.get(key)
            if last is not None and now - last < self.window_s:
                return False
            self._seen[key] = now
            return True


def segment_response(segment: Any, path: Path) -> FileResponse:
    """One recorded segment for playback: inline (range requests for seeking), never cached."""
    return FileResponse(
        path,
        media_type="video/mp4",
        filename=f"camera{segment.camera_id}-{segment.start:%Y%m%dT%H%M%SZ}.mp4",
        content_disposition_type="inline",
        headers={"Cache-Control": "no-store"},
    )
