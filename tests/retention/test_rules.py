"""The pure deletion rule and the on-disk layout, from tables."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from permits.policy import Policy
from retention.paths import (
    epoch_ms,
    parse_relative,
    partial_path,
    relative_segment_path,
    resolve,
    segment_path,
)
from retention.rules import HoldWindow, due_for_deletion

NOW = dt.datetime(2025, 3, 30, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
US = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Seg:
    start: dt.datetime
    end: dt.datetime


def policy(hours: int, basis_id: int | None = 7) -> Policy:
    return Policy(
        may_view_live=True,
        may_record=True,
        max_retention_hours=hours,
        masking_required=True,
        active_now=True,
        basis_id=basis_id,
    )


def ending(at: dt.datetime) -> Seg:
    return Seg(at - dt.timedelta(minutes=10), at)


def hold(
    start: dt.datetime,
    end: dt.datetime,
    *,
    expires_at: dt.datetime | None = None,
    released_at: dt.datetime | None = None,
) -> HoldWindow:
    return HoldWindow(1, start, end, expires_at=expires_at, released_at=released_at)


CUTOFF_72 = NOW - 72 * H
OLD = ending(CUTOFF_72 - H)

CASES = [
    # (id, segment, retention hours, holds, due)
    ("ends-exactly-at-cutoff-kept", ending(CUTOFF_72), 72, [], False),
    ("ends-1us-before-cutoff-due", ending(CUTOFF_72 - US), 72, [], True),
    ("ends-1us-after-cutoff-kept", ending(CUTOFF_72 + US), 72, [], False),
    ("recent-kept", ending(NOW - H), 72, [], False),
    ("ancient-due", ending(NOW - 1000 * H), 72, [], True),
    ("held-old-kept", OLD, 72, [hold(OLD.start, OLD.end)], False),
    ("hold-covers-only-first-second", OLD, 72, [hold(OLD.start - H, OLD.start + US)], False),
    ("hold-covers-only-last-second", OLD, 72, [hold(OLD.end - US, OLD.end + H)], False),
    ("hold-ends-where-segment-starts", OLD, 72, [hold(OLD.start - H, OLD.start)], True),
    ("hold-starts-where-segment-ends", OLD, 72, [hold(OLD.end, OLD.end + H)], True),
    ("hold-elsewhere", OLD, 72, [hold(NOW - 10 * H, NOW)], True),
    ("hold-expired-1us-ago", OLD, 72, [hold(OLD.start, OLD.end, expires_at=NOW - US)], True),
    ("hold-expires-exactly-now", OLD, 72, [hold(OLD.start, OLD.end, expires_at=NOW)], True),
    ("hold-expires-later", OLD, 72, [hold(OLD.start, OLD.end, expires_at=NOW + US)], False),
    ("hold-released", OLD, 72, [hold(OLD.start, OLD.end, released_at=NOW - H)], True),
    ("hold-released-later", OLD, 72, [hold(OLD.start, OLD.end, released_at=NOW + H)], False),
    ("zero-retention-anything-ended", ending(NOW - US), 0, [], True),
    ("zero-retention-ends-now-kept", ending(NOW), 0, [], False),
    ("zero-retention-held", ending(NOW - H), 0, [hold(NOW - 2 * H, NOW)], False),
    ("one-hour-retention", ending(NOW - H - US), 1, [], True),
]


@pytest.mark.nodb
@pytest.mark.parametrize(
    ("seg", "hours", "holds", "due"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_due_for_deletion(seg: Seg, hours: int, holds: list[HoldWindow], due: bool) -> None:
    verdict = due_for_deletion(seg, policy(hours), holds, NOW)
    assert verdict.due is due, verdict.reason
    assert verdict.cutoff == NOW - hours * H
    if not due and seg.end < verdict.cutoff:
        assert verdict.held_by == (1,)
        assert "legal hold 1" in verdict.reason


@pytest.mark.nodb
def test_rule_names_the_source_of_the_limit() -> None:
    assert due_for_deletion(OLD, policy(72, 7), [], NOW).rule == "retention 72h (legal basis 7)"
    assert due_for_deletion(OLD, policy(24, None), [], NOW).rule == "retention 24h (camera setting)"


@pytest.mark.nodb
def test_naive_now_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        due_for_deletion(OLD, policy(72), [], NOW.replace(tzinfo=None))


@pytest.mark.nodb
def test_layout() -> None:
    start = dt.datetime(2025, 3, 30, 1, 59, 59, 999000, tzinfo=dt.UTC)
    rel = relative_segment_path(42, start)
    assert rel == f"recordings/42/2025/03/30/01/{epoch_ms(start)}.mp4"
    assert segment_path(Path("/data"), 42, start) == Path("/data") / rel
    assert partial_path(Path("/d/1.mp4")) == Path("/d/1.mp4.partial")
    parsed = parse_relative(rel)
    assert parsed is not None
    assert (parsed.camera_id, parsed.start) == (42, start)


@pytest.mark.nodb
def test_layout_uses_utc_hours_whatever_the_zone() -> None:
    # 02:30 in Stockholm on the day clocks go forward does not exist locally; UTC has no hole.
    cet = dt.timezone(dt.timedelta(hours=1))
    start = dt.datetime(2025, 3, 30, 1, 30, tzinfo=cet)
    assert relative_segment_path(1, start).startswith("recordings/1/2025/03/30/00/")


@pytest.mark.nodb
@pytest.mark.parametrize(
    "rel",
    [
        "recordings/1/2025/03/30/01/abc.mp4",
        "recordings/1/2025/03/30/05/1743296400000.mp4",  # folder hour disagrees with the name
        "recordings/x/2025/03/30/01/1743296400000.mp4",
        "elsewhere/1/2025/03/30/01/1743296400000.mp4",
        "recordings/1/2025/03/30/01/1743296400000.mp4.partial",
    ],
)
def test_foreign_paths_are_not_parsed(rel: str) -> None:
    assert parse_relative(rel) is None


@pytest.mark.nodb
@pytest.mark.parametrize("rel", ["/etc/passwd", "../outside.mp4", "recordings/../../x", ""])
def test_resolve_refuses_escapes(rel: str) -> None:
    with pytest.raises(ValueError, match="inside the data dir"):
        resolve(Path("/data"), rel)


@pytest.mark.nodb
def test_naive_start_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        relative_segment_path(1, dt.datetime(2025, 1, 1))
