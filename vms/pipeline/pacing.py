"""Picking frames for a target rate out of a source of another rate.

"At least 1/fps since the last frame taken" undershoots: from a 25 fps camera a 10 fps target
takes every third frame (8.3/s), because the frame 80 ms after the last one is too early and the
next one is 40 ms late. A schedule instead keeps the average at the target: each frame taken moves
the next due time one period on (not one period past the frame), and a frame a little early still
counts, so 25 -> 10 takes frames 0, 2, 5, 7, 10, ... (10/s), and a camera at or below the target
rate gives every frame.
"""

from __future__ import annotations

# A quarter period of slack: source frames jitter, and one that arrives just early still counts.
_SLACK = 0.25


class FramePacer:
    """A schedule of due times at `fps` a second (None: every frame is due)."""

    __slots__ = ("_next", "_period")

    def __init__(self, fps: float | None) -> None:
        self._period = 0.0 if fps is None else 1.0 / fps
        self._next = float("-inf")

    def due(self, now: float) -> bool:
        """Whether a frame at `now` (monotonic seconds) belongs to the schedule."""
        return now >= self._next - _SLACK * self._period

    def took(self, now: float) -> None:
        """Record that the frame at `now` was taken."""
        if now - self._next >= self._period:
            # Behind by more than a period (the first frame, a gap, nobody watching): start the
            # schedule again from this frame rather than catch up with a burst.
            self._next = now + self._period
        else:
            self._next += self._period

    def take(self, now: float) -> bool:
        """`due`, and when it is, `took`."""
        if not self.due(now):
            return False
        self.took(now)
        return True
