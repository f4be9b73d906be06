"""Retention services: the footage index (segments and gaps), legal holds, the sweep, the check.

The recording pipeline indexes what it writes through `add_segment`/`open_gap`/`close_gap`;
the recordings routes read through `list_recordings`; exports pin footage through
`create_hold`. Nobody else touches the retention tables.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from registry import service as registry_service
from retention.holds import camera_ids_of as hold_camera_ids
from retention.holds import (
    create_hold,
    get_hold_or_raise,
    list_holds,
    release_hold,
)
from retention.holds import is_active as hold_is_active
from retention.models import Gap, MaskedBy, Segment, SegmentState
from retention.paths import resolve
from retention.paths import segment_path as _segment_path
from retention.receipts import list_receipts
from retention.reconcile import CheckReport, check
from retention.report import build_report
from retention.schemas import RetentionReportRead
from retention.sweep import SweepReport, sweep
from vms.core import audit
from vms.core.auth import Principal
from vms.core.errors import InvalidInput, NotFound
from vms.core.pagination import PageParams
from vms.core.times import aware_utc as _aware

logger = logging.getLogger(__name__)

__all__ = [
    "CheckReport",
    "SweepReport",
    "add_segment",
    "camera_gaps",
    "camera_segments",
    "camera_withheld",
    "check",
    "close_gap",
    "close_open_gaps_at_startup",
    "count_camera_segments",
    "count_recordings",
    "create_hold",
    "get_hold_or_raise",
    "get_segment_or_raise",
    "hold_camera_ids",
    "hold_is_active",
    "list_holds",
    "list_receipts",
    "list_recordings",
    "open_gap",
    "quarantined_segments",
    "release_hold",
    "release_remasked",
    "resolve_segment_file",
    "retention_report",
    "segment_path",
    "segment_paths",
    "sweep",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def segment_path(data_dir: Path, camera_id: int, start: dt.datetime) -> Path:
    """Where the segment of `camera_id` starting at `start` lives (see retention.paths)."""
    return _segment_path(data_dir, camera_id, start)


def add_segment(
    *,
    session: Session,
    camera_id: int,
    start: dt.datetime,
    end: dt.datetime,
    path: str,
    size_bytes: int,
    sha256: str,
    mask_plan_hash: str | None,
    codec: str,
    width: int,
    height: int,
    frames: int,
    state: str = SegmentState.ok.value,
    masked_by: str = MaskedBy.vms.value,
) -> Segment:
    """Index one finished segment file (`path` relative to the data dir): playable (`ok`) or
    `quarantined` (a passthrough segment no passing mask check covers)."""
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise InvalidInput("a segment must end after it starts", field="end")
    try:
        resolve(Path("."), path)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="path") from exc
    if size_bytes < 0 or width <= 0 or height <= 0 or frames < 0:
        raise InvalidInput("size, width, height and frames must be positive", field="size_bytes")
    if not _SHA256.match(sha256):
        raise InvalidInput("sha256 must be 64 lowercase hex characters", field="sha256")
    if state not in (SegmentState.ok, SegmentState.quarantined):
        raise InvalidInput("a new segment is ok or quarantined", field="state")
    registry_service.get_camera_or_raise(session=session, camera_id=camera_id)
    segment = Segment(
        camera_id=camera_id,
        start=start,
        end=end,
        path=path,
        size_bytes=size_bytes,
        sha256=sha256,
        mask_plan_hash=mask_plan_hash,
        codec=codec,
        width=width,
        height=height,
        frames=frames,
        state=SegmentState(state),
        masked_by=MaskedBy(masked_by),
    )
    session.add(segment)
    session.flush()
    return segment


def _open_gap_of(session: Session, camera_id: int) -> Gap | None:
    return session.scalars(
        select(Gap)
        .where(Gap.camera_id == camera_id, Gap.end.is_(None))
        .order_by(Gap.start.desc())
        .limit(1)
    ).first()


def open_gap(
    *,
    session: Session,
    camera_id: int,
    start: dt.datetime,
    reason: str,
    detail: str | None = None,
) -> Gap:
    """Record that `camera_id` stopped recording at `start` and why.

    Idempotent for the same reason (the open gap is returned); a different reason closes the
    open gap at `start` and opens a new one, so the record says when the cause changed.
    """
    start = _aware(start, "start")
    if not reason or len(reason) > 64:
        raise InvalidInput("reason must be 1-64 characters", field="reason")
    registry_service.get_camera_or_raise(session=session, camera_id=camera_id)
    current = _open_gap_of(session, camera_id)
    if current is not None:
        if current.reason == reason:
            if detail is not None and detail != current.detail:
                current.detail = detail
                session.flush()
            return current
        current.end = max(start, current.start)
    gap = Gap(camera_id=camera_id, start=start, end=None, reason=reason, detail=detail)
    session.add(gap)
    session.flush()
    return gap


def close_gap(*, session: Session, camera_id: int, end: dt.datetime) -> Gap | None:
    """Close the camera's open gap at `end` (recording resumed); None if none was open."""
    end = _aware(end, "end")
    current = _open_gap_of(session, camera_id)
    if current is None:
        return None
    current.end = max(end, current.start)
    session.flush()
    return current


def close_open_gaps_at_startup(*, session: Session, at: dt.datetime) -> int:
    """Close every gap left open by a previous run at `at` (the moment this run starts).

    The process was not running between the crash and `at`, so the old gap really lasted
    until then; the pipeline opens fresh gaps for cameras that still cannot record.
    """
    at = _aware(at, "at")
    result = session.execute(
        update(Gap)
        .where(Gap.end.is_(None), Gap.start <= at)
        .values(end=at)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    closed = int(getattr(result, "rowcount", 0) or 0)
    if closed:
        logger.info("closed %s recording gaps left open by the previous run", closed)
    return closed


def get_segment_or_raise(*, session: Session, segment_id: int, principal: Principal) -> Segment:
    """One playable segment of a camera the principal may read (404 otherwise, also across
    organisations: the segment's existence is not revealed)."""
    segment = session.get(Segment, segment_id)
    if segment is None or segment.state is not SegmentState.ok:
        raise NotFound("recording not found", field="segment_id")
    try:
        registry_service.get_camera_or_raise(
            session=session, camera_id=segment.camera_id, principal=principal
        )
    except NotFound as exc:
        raise NotFound("recording not found", field="segment_id") from exc
    return segment


def playable_segment(*, session: Session, segment_id: int) -> Segment | None:
    """A playable segment by id, for trusted callers that applied their own rules (issue 14:
    a sharing agreement's recipient, authorised by the sharing service)."""
    segment = session.get(Segment, segment_id)
    return segment if segment is not None and segment.state is SegmentState.ok else None


def resolve_segment_file(data_dir: Path, segment: Segment) -> Path:
    """The segment's file (its index path resolved inside the data dir)."""
    return resolve(data_dir, segment.path)


def _overlapping(camera_id: int, start: dt.datetime, end: dt.datetime) -> list[Any]:
    return [
        Segment.camera_id == camera_id,
        Segment.start < end,
        Segment.end > start,
        Segment.state == SegmentState.ok,
    ]


def camera_segments(
    *,
    session: Session,
    camera_id: int,
    start: dt.datetime,
    end: dt.datetime,
    limit: int | None = None,
    offset: int = 0,
) -> list[Segment]:
    """Playable segments of a camera overlapping [start, end), oldest first. For trusted
    callers (export build, pipeline) that have applied their own rules; readers go through
    `list_recordings`."""
    stmt = (
        select(Segment)
        .where(*_overlapping(camera_id, _aware(start, "start"), _aware(end, "end")))
        .order_by(Segment.start, Segment.id)
        .offset(offset)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def camera_withheld(
    *, session: Session, camera_id: int, start: dt.datetime, end: dt.datetime
) -> list[Segment]:
    """Quarantined segments of a camera overlapping [start, end), oldest first (trusted
    callers): footage that exists but may not be shown or exported until re-masked."""
    start, end = _aware(start, "start"), _aware(end, "end")
    return list(
        session.scalars(
            select(Segment)
            .where(
                Segment.camera_id == camera_id,
                Segment.start < end,
                Segment.end > start,
                Segment.state == SegmentState.quarantined,
            )
            .order_by(Segment.start, Segment.id)
        )
    )


def quarantined_segments(
    *, session: Session, camera_id: int | None = None, segment_ids: Sequence[int] = ()
) -> list[Segment]:
    """Quarantined segments (of a camera, or these ids, or all), oldest first: for the
    re-masking job."""
    stmt = select(Segment).where(Segment.state == SegmentState.quarantined)
    if camera_id is not None:
        stmt = stmt.where(Segment.camera_id == camera_id)
    if segment_ids:
        stmt = stmt.where(Segment.id.in_(list(segment_ids)))
    return list(session.scalars(stmt.order_by(Segment.start, Segment.id)))


def release_remasked(
    *,
    session: Session,
    segment_id: int,
    sha256: str,
    size_bytes: int,
    frames: int,
    mask_plan_hash: str | None,
) -> Segment:
    """A quarantined segment whose file vms has re-masked: playable, masked by vms."""
    segment = session.get(Segment, segment_id, with_for_update=True)
    if segment is None or segment.state is not SegmentState.quarantined:
        raise NotFound("no such quarantined segment", field="segment_id")
    segment.sha256 = sha256
    segment.size_bytes = size_bytes
    segment.frames = frames
    segment.mask_plan_hash = mask_plan_hash
    segment.masked_by = MaskedBy.vms
    segment.state = SegmentState.ok
    session.flush()
    return segment


def count_camera_segments(
    *, session: Session, camera_id: int, start: dt.datetime, end: dt.datetime
) -> int:
    """How many playable segments of a camera overlap [start, end) (trusted callers)."""
    where = _overlapping(camera_id, _aware(start, "start"), _aware(end, "end"))
    return int(session.scalar(select(func.count(Segment.id)).where(*where)) or 0)


def camera_gaps(
    *, session: Session, camera_id: int, start: dt.datetime, end: dt.datetime
) -> list[Gap]:
    """Recording gaps of a camera overlapping [start, end), oldest first (trusted callers)."""
    start, end = _aware(start, "start"), _aware(end, "end")
    return list(
        session.scalars(
            select(Gap)
            .where(
                Gap.camera_id == camera_id,
                Gap.start < end,
                (Gap.end.is_(None)) | (Gap.end > start),
            )
            .order_by(Gap.start, Gap.id)
        )
    )


def segment_paths(
    *, session: Session, camera_id: int, start: dt.datetime, end: dt.datetime
) -> set[str]:
    """Paths of the camera's index rows starting in [start, end), in any state: a file whose
    path has a row must not be indexed again (crash recovery asks)."""
    return set(
        session.scalars(
            select(Segment.path).where(
                Segment.camera_id == camera_id,
                Segment.start >= _aware(start, "start"),
                Segment.start < _aware(end, "end"),
            )
        )
    )


def list_recordings(
    *,
    session: Session,
    principal: Principal,
    camera_id: int,
    start: dt.datetime,
    end: dt.datetime,
    page: PageParams,
) -> tuple[list[Segment], list[Gap]]:
    """Segments (one page, oldest first) and gaps of a camera overlapping [start, end).

    Only playable segments are listed: rows being deleted or whose file went missing are not.
    Cross-organisation access is a 404 (the camera is not found).
    """
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise InvalidInput("end must be after start", field="end")
    registry_service.get_camera_or_raise(session=session, camera_id=camera_id, principal=principal)
    segments = camera_segments(
        session=session,
        camera_id=camera_id,
        start=start,
        end=end,
        limit=page.limit,
        offset=page.offset,
    )
    return segments, camera_gaps(session=session, camera_id=camera_id, start=start, end=end)


def count_recordings(
    *,
    session: Session,
    principal: Principal,
    camera_id: int,
    start: dt.datetime,
    end: dt.datetime,
) -> int:
    """How many playable segments overlap [start, end) (the page total for list_recordings)."""
    registry_service.get_camera_or_raise(session=session, camera_id=camera_id, principal=principal)
    return count_camera_segments(session=session, camera_id=camera_id, start=start, end=end)


def retention_report(
    *,
    session: Session,
    principal: Principal | None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    organisation_id: int | None = None,
    camera_id: int | None = None,
    now: dt.datetime | None = None,
) -> RetentionReportRead:
    """The DPO report (see retention.report); viewing it through the API is audit-logged."""
    report = build_report(
        session=session,
        principal=principal,
        since=since,
        until=until,
        organisation_id=organisation_id,
        camera_id=camera_id,
        now=now,
    )
    if principal is not None:
        audit.record(
            session,
            action="retention.report_viewed",
            actor=principal,
            target_type="retention_report",
            details={
                "since": report.period_start.isoformat(),
                "until": report.period_end.isoformat(),
                "organisation_id": organisation_id,
                "camera_id": camera_id,
                "cameras": len(report.cameras),
            },
        )
    return report
