"""Queries over the footage index that the sweep, the reconciliation check and the DPO report
share: which cameras have footage, each camera's rules for this run, and its deletable rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, text
from sqlalchemy.orm import Session

from permits import service as permit_service
from permits.policy import Policy, policy_for
from registry import service as registry_service
from retention.models import Segment, SegmentState
from retention.rules import HoldWindow, cutoff_for, kept_window


def prune_empty(folder: Path, stop: Path) -> None:
    """Remove empty hour/day/month/year folders up to (not including) the camera folder."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def cameras_with_footage(session: Session) -> list[int]:
    """Distinct camera ids in the index, by skip scan: one index probe per camera."""
    table = Segment.__tablename__
    sql = text(
        f"WITH RECURSIVE c(id) AS ("
        f" SELECT MIN(camera_id) FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT MIN(s.camera_id) FROM {table} s WHERE s.camera_id > c.id)"
        f" FROM c WHERE c.id IS NOT NULL"
        f") SELECT id FROM c WHERE id IS NOT NULL"
    )
    return [int(r[0]) for r in session.execute(sql)]


@dataclass(frozen=True)
class CameraRules:
    camera_id: int
    organisation_id: int
    policy: Policy
    cutoff: dt.datetime
    holds: tuple[HoldWindow, ...]
    kept: tuple[dt.datetime, dt.datetime] | None = None


def camera_rules(
    session: Session,
    camera_id: int,
    now: dt.datetime,
    holds: dict[int, list[HoldWindow]],
    pinned: dict[int, Any] | None = None,
) -> CameraRules:
    """The policy of one camera at `now` (`permits.policy_for`), computed once per sweep.

    `pinned` keeps the legal bases loaded during a sweep alive: the session's identity map
    holds objects weakly, and a thousand cameras usually share a handful of bases.
    """
    camera = registry_service.get_camera_or_raise(session=session, camera_id=camera_id)
    basis_id = camera.legal_basis_id
    if pinned is not None and basis_id is not None and basis_id not in pinned:
        pinned.update(permit_service.get_bases(session=session, basis_ids=[basis_id]))
    policy = policy_for(registry_service.camera_facts(session=session, camera=camera), now)
    return CameraRules(
        camera_id=camera_id,
        organisation_id=camera.organisation_id,
        policy=policy,
        cutoff=cutoff_for(policy, now),
        holds=tuple(holds.get(camera_id, ())),
        kept=kept_window(policy, now),
    )


_COLUMNS = (
    Segment.id,
    Segment.camera_id,
    Segment.start,
    Segment.end,
    Segment.path,
    Segment.size_bytes,
    Segment.sha256,
    Segment.state,
)


def not_held(holds: Sequence[HoldWindow]) -> list[Any]:
    # The pure rule has the last word; excluding hold windows here keeps held footage out of
    # every batch, so a long hold never makes a sweep re-read the same rows.
    return [or_(Segment.start >= h.end, Segment.end <= h.start) for h in holds]


def _after(key: tuple[dt.datetime, int] | None) -> list[Any]:
    if key is None:
        return []
    end, seg_id = key
    return [
        Segment.end >= end,
        or_(Segment.end > end, and_(Segment.end == end, Segment.id > seg_id)),
    ]


def past_retention(rules: CameraRules) -> list[Any]:
    """SQL conditions for "older than the camera's retention" (with a shortened retention whose
    purge is not confirmed, older footage is judged by the earlier, longer one)."""
    conditions: list[Any] = [Segment.end < rules.cutoff]
    if rules.kept is not None:
        before, cutoff = rules.kept
        conditions.append(or_(Segment.end >= before, Segment.end < cutoff))
    return conditions


def due_rows(
    session: Session,
    rules: CameraRules,
    *,
    limit: int,
    after: tuple[dt.datetime, int] | None = None,
    before: dt.datetime | None = None,
) -> list[Any]:
    """The camera's oldest deletable rows ending before `before` (default: its cut-off)."""
    stmt = (
        select(*_COLUMNS)
        .where(
            Segment.camera_id == rules.camera_id,
            *([Segment.end < before] if before is not None else past_retention(rules)),
            Segment.state != SegmentState.deleting,
            *not_held(rules.holds),
            *_after(after),
        )
        .order_by(Segment.end, Segment.id)
        .limit(limit)
    )
    return list(session.execute(stmt).all())
