"""Shared recordings: a shared camera's segments and gaps as its recipient may list them (from
the start of the sharing on), and the audit entry of one viewing."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from retention import service as retention_service
from sharing.grants import RecordingsGrant, authorise_recordings
from vms.core import audit
from vms.core.auth import Principal
from vms.core.db import utcnow
from vms.core.errors import InvalidInput
from vms.core.pagination import PageParams

if TYPE_CHECKING:
    from retention.models import Gap, Segment


def shared_recordings(
    *,
    session: Session,
    principal: Principal,
    camera_id: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    page: PageParams,
) -> tuple[dt.datetime, dt.datetime, list[Segment], list[Gap], int]:
    """A shared camera's segments (one page) and gaps in [start, end) (default: the last 24
    hours), for a recipient allowed its recordings; footage from before the agreement is left
    out, also a segment that began before it."""
    allowed = authorise_recordings(session=session, principal=principal, camera_id=camera_id)
    end = end or utcnow()
    start = start or end - dt.timedelta(hours=24)
    if end <= start:
        raise InvalidInput("end must be after start", field="end")
    shown_from = max(start, allowed.since)
    if shown_from >= end:
        return start, end, [], [], 0
    segments = [
        s
        for s in retention_service.camera_segments(
            session=session,
            camera_id=camera_id,
            start=shown_from,
            end=end,
            limit=page.limit,
            offset=page.offset,
        )
        if s.start >= allowed.since
    ]
    total = retention_service.count_camera_segments(
        session=session, camera_id=camera_id, start=shown_from, end=end
    )
    # Segments do not overlap: at most the first one began before the agreement.
    first = retention_service.camera_segments(
        session=session, camera_id=camera_id, start=shown_from, end=end, limit=1
    )
    if first and first[0].start < allowed.since:
        total -= 1
    gaps = retention_service.camera_gaps(
        session=session, camera_id=camera_id, start=shown_from, end=end
    )
    return start, end, segments, gaps, total


def record_recording_view(
    *, session: Session, principal: Principal, allowed: RecordingsGrant, details: dict[str, Any]
) -> None:
    """One recipient viewing of a shared segment (audited once per viewer, segment and window)."""
    audit.record(
        session,
        action="sharing.recording.view",
        actor=principal,
        organisation_id=allowed.grant.owner_organisation_id,
        target_type="camera",
        target_id=allowed.grant.camera_id,
        details={
            "agreement_id": allowed.grant.agreement_id,
            "recipient_organisation_id": allowed.grant.recipient_organisation_id,
            **details,
        },
    )
