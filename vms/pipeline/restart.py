"""Backoff with jitter and a restart budget: pure, clock passed in, tested without processes."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


def backoff_delay(
    attempt: int, *, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, "equal jitter".

    Half the delay is fixed and half random, so a fleet of cameras that failed together (a
    switch rebooted) does not reconnect in lock-step, yet every retry still waits a while.
    """
    if attempt < 1:
        return 0.0
    base = min(maximum, initial * 2.0 ** min(attempt - 1, 30))
    r = (rng or random).random()
    return base / 2 + r * base / 2


@dataclass
class RestartBudget:
    """At most `limit` restarts within any `window` seconds.

    When it is spent, `allowed(now)` stays False until the oldest restart leaves the window;
    a worker that crashes in a loop then costs a restart every `window / limit` seconds at most.
    """

    limit: int
    window: float
    _times: deque[float] = field(default_factory=deque)

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()

    def allowed(self, now: float) -> bool:
        self._expire(now)
        return len(self._times) < self.limit

    def spend(self, now: float) -> None:
        self._expire(now)
        self._times.append(now)

    def used(self, now: float) -> int:
        self._expire(now)
        return len(self._times)

    def next_allowed_at(self, now: float) -> float:
        """When the next restart will be allowed (now, if it is)."""
        self._expire(now)
        if len(self._times) < self.limit:
            return now
        return self._times[0] + self.window


@dataclass
class Backoff:
    """Consecutive-failure counter that turns into delays; reset after a healthy run."""

    initial: float
    maximum: float
    # A run this long counts as healthy and resets the exponent.
    healthy_after: float = 30.0
    rng: random.Random | None = None
    failures: int = 0

    def failed(self) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        self.failures += 1
        return backoff_delay(
            self.failures, initial=self.initial, maximum=self.maximum, rng=self.rng
        )

    def ran_for(self, seconds: float) -> None:
        if seconds >= self.healthy_after:
            self.failures = 0
