"""Sign-in throttling: a flood of wrong passwords slows to a trickle, per account and per
client address, and cannot fill the audit log (and so the disk the footage shares).

In memory, per API process: a restart forgets the counters (an attacker gains one window), and
several API processes each allow the limit. Both are stated in docs/security.md.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    account_failures: int = 5  # per account within `window_s`
    address_failures: int = 20  # per client address within `window_s`
    window_s: float = 900.0
    lockout_s: float = 300.0  # how long a limit, once hit, refuses sign-ins
    # Failures against unknown accounts are audited as one summary entry per this interval.
    summary_interval_s: float = 60.0


@dataclass
class _Counter:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True)
class Refusal:
    """Too many failures: refuse without checking the password."""

    retry_after_s: int
    scope: str  # "account" or "address"


@dataclass
class UnknownSummary:
    """Failures against accounts that do not exist since the last summary."""

    count: int
    addresses: set[str]
    samples: list[str]  # hashed, never the text a client sent
    since: float


def email_digest(email: str) -> str:
    """A stable pseudonym for an email address that is not an account: enough to correlate a
    flood, without storing whatever text an attacker sends as an "email"."""
    return "sha256:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


class LoginThrottle:
    def __init__(self, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic):
        self.limits = limits or Limits()
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Counter] = {}
        self._addresses: dict[str, _Counter] = {}
        self._unknown: UnknownSummary | None = None
        self._last_summary = float("-inf")

    def check(self, account: str, address: str) -> Refusal | None:
        """Whether a sign-in for `account` from `address` may be tried now."""
        now = self._clock()
        with self._lock:
            for scope, table, key in (
                ("account", self._accounts, account),
                ("address", self._addresses, address),
            ):
                counter = table.get(key)
                if counter is not None and counter.locked_until > now:
                    return Refusal(max(1, round(counter.locked_until - now)), scope)
        return None

    def failed(self, account: str, address: str) -> Refusal | None:
        """Count a failure; the refusal the next attempt will get, if a limit is now hit."""
        now = self._clock()
        lim = self.limits
        refusal: Refusal | None = None
        with self._lock:
            for scope, table, key, limit in (
                ("account", self._accounts, account, lim.account_failures),
                ("address", self._addresses, address, lim.address_failures),
            ):
                counter = table.setdefault(key, _Counter())
                counter.failures.append(now)
                while counter.failures and counter.failures[0] <= now - lim.window_s:
                    counter.failures.popleft()
                if len(counter.failures) >= limit:
                    counter.locked_until = now + lim.lockout_s
                    counter.failures.clear()
                    refusal = refusal or Refusal(round(lim.lockout_s), scope)
            self._forget_old(now)
        return refusal

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._accounts.pop(account, None)

    def unknown_failure(self, digest: str, address: str) -> UnknownSummary | None:
        """Count a failure against an unknown account. Returns what to audit: the failures
        since the last summary, at most once per `summary_interval_s` (the first one at once),
        so a flood of made-up names writes one row a minute."""
        now = self._clock()
        with self._lock:
            pending = self._unknown
            if pending is None:
                pending = self._unknown = UnknownSummary(0, set(), [], now)
            pending.count += 1
            pending.addresses.add(address)
            if len(pending.samples) < 5 and digest not in pending.samples:
                pending.samples.append(digest)
            if now - self._last_summary < self.limits.summary_interval_s:
                return None
            self._last_summary = now
            self._unknown = None
            return pending

    def _forget_old(self, now: float) -> None:
        # Bounded memory: drop counters with nothing recent and no lock in force.
        horizon = now - self.limits.window_s
        for table in (self._accounts, self._addresses):
            if len(table) > 10_000:
                for key in [
                    k
                    for k, c in table.items()
                    if c.locked_until <= now and (not c.failures or c.failures[-1] <= horizon)
                ]:
                    del table[key]
