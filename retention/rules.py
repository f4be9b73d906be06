"""When footage must go: pure decisions, no database and no clock.

The sweep asks `due_for_deletion` for every candidate segment; the tests drive it from a table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from permits.policy import Policy

RULE_RETENTION = "retention"
RULE_DISK_PRESSURE = "disk_pressure"
RULE_ORPHAN = "orphan_past_retention"
RULE_STALE_PARTIAL = "stale_partial"


class SegmentSpan(Protocol):
    @property
    def start(self) -> dt.datetime: ...

    @property
    def end(self) -> dt.datetime: ...


@dataclass(frozen=True)
class HoldWindow:
    """A legal hold as the rules see it: the footage it pins and how long it lasts."""

    hold_id: int
    start: dt.datetime
    end: dt.datetime
    expires_at: dt.datetime | None = None
    released_at: dt.datetime | None = None
    case_number: str = ""

    def active_at(self, now: dt.datetime) -> bool:
        if self.released_at is not None and self.released_at <= now:
            return False
        return self.expires_at is None or now < self.expires_at

    def covers(self, start: dt.datetime, end: dt.datetime) -> bool:
        """Whether any instant of [start, end) falls inside the hold's [start, end)."""
        return start < self.end and end > self.start


@dataclass(frozen=True)
class Verdict:
    due: bool
    rule: str  # what the receipt cites, e.g. "retention 72h (legal basis 4)"
    reason: str
    cutoff: dt.datetime
    held_by: tuple[int, ...] = ()


def cutoff_for(policy: Policy, now: dt.datetime) -> dt.datetime:
    """Footage that ended before this instant is older than the policy allows."""
    return now - dt.timedelta(hours=max(policy.max_retention_hours, 0))


def kept_window(policy: Policy, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """(before, cutoff) while a shortened retention is not confirmed: footage that ended before
    `before` is kept by the earlier, longer retention, so only what ended before `cutoff` of it
    is due."""
    if policy.kept_before is None or policy.kept_hours is None:
        return None
    return policy.kept_before, now - dt.timedelta(hours=policy.kept_hours)


def rule_text(policy: Policy) -> str:
    source = f"legal basis {policy.basis_id}" if policy.basis_id is not None else "camera setting"
    return f"{RULE_RETENTION} {policy.max_retention_hours}h ({source})"


def holding(span: SegmentSpan, holds: Iterable[HoldWindow], now: dt.datetime) -> tuple[int, ...]:
    """The ids of the holds active at `now` that pin any part of `span`."""
    return tuple(h.hold_id for h in holds if h.active_at(now) and h.covers(span.start, span.end))


def due_for_deletion(
    segment: SegmentSpan, policy: Policy, holds: Iterable[HoldWindow], now: dt.datetime
) -> Verdict:
    """Whether `segment` must be deleted at `now`.

    Due when its end is strictly older than the effective retention (the camera's wish capped
    by its legal basis, as `policy_for` computed it) and no active hold covers any part of it.
    """
    if now.tzinfo is None:
        raise ValueError("due_for_deletion needs an aware datetime")
    cutoff = cutoff_for(policy, now)
    rule = rule_text(policy)
    kept = kept_window(policy, now)
    if kept is not None and segment.end < kept[0]:
        cutoff = kept[1]
        rule = (
            f"{RULE_RETENTION} {policy.kept_hours}h (recorded before the retention was shortened "
            f"to {policy.max_retention_hours}h; purge not confirmed)"
        )
    if segment.end >= cutoff:
        return Verdict(False, rule, "within retention", cutoff)
    held = holding(segment, holds, now)
    if held:
        ids = ", ".join(str(i) for i in held)
        return Verdict(False, rule, f"under legal hold {ids}", cutoff, held)
    return Verdict(True, rule, "older than retention", cutoff)
