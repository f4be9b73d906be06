"""Legal holds (evidence locks): who may pin footage, see a hold, and release it.

- police create holds for their own requests: the hold belongs to their organisation and may
  name any camera (they work across organisations), but they only see and release holds they
  created;
- a DPO or an admin creates holds on cameras of organisations they can read, and sees or
  releases every hold touching those organisations;
- every other role may do none of it.
Every create, release and expiry is written to the audit log of each organisation whose cameras
the hold covers.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from registry import service as registry_service
from retention.models import LegalHold, LegalHoldCamera
from retention.rules import HoldWindow
from vms.core import audit
from vms.core.auth import Principal
from vms.core.db import utcnow
from vms.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from vms.core.models import Role
from vms.core.pagination import PageParams
from vms.core.times import aware_utc as _aware

logger = logging.getLogger(__name__)

HOLD_ROLES = (Role.admin, Role.dpo, Role.police)
# Arbitrary constant naming the PostgreSQL advisory lock that orders holds and deletions.
_PG_HOLD_LOCK = 0x5645_4D48
MAX_CAMERAS_PER_HOLD = 1000


def camera_ids_of(*, session: Session, hold_ids: Iterable[int]) -> dict[int, list[int]]:
    """The cameras each hold covers, sorted."""
    ids = list(set(hold_ids))
    out: dict[int, list[int]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = session.execute(
        select(LegalHoldCamera.hold_id, LegalHoldCamera.camera_id)
        .where(LegalHoldCamera.hold_id.in_(ids))
        .order_by(LegalHoldCamera.hold_id, LegalHoldCamera.camera_id)
    )
    for hold_id, camera_id in rows:
        out[hold_id].append(camera_id)
    return out


def _camera_orgs(session: Session, camera_ids: Iterable[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for cid in camera_ids:
        camera = registry_service.get_camera(session=session, camera_id=cid)
        if camera is not None:
            out[cid] = camera.organisation_id
    return out


def _audit_orgs(hold: LegalHold, camera_orgs: dict[int, int]) -> list[int]:
    return sorted({hold.organisation_id, *camera_orgs.values()})


def _details(hold: LegalHold, camera_ids: Sequence[int]) -> dict[str, object]:
    return {
        "hold_id": hold.id,
        "camera_ids": list(camera_ids),
        "start": hold.start.isoformat(),
        "end": hold.end.isoformat(),
        "case_number": hold.case_number,
        "reason": hold.reason,
        "expires_at": hold.expires_at.isoformat() if hold.expires_at else None,
        "export_request_id": hold.export_request_id,
    }


def create_hold(
    *,
    session: Session,
    actor: Principal,
    camera_ids: Sequence[int],
    start: dt.datetime,
    end: dt.datetime,
    case_number: str,
    reason: str,
    expires_at: dt.datetime | None,
    export_request_id: int | None = None,
    now: dt.datetime | None = None,
) -> LegalHold:
    """Pin the footage of `camera_ids` in [start, end) until released or `expires_at`."""
    actor.require_role(*HOLD_ROLES)
    lock_holds(session)
    now = now or utcnow()
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        raise InvalidInput("end must be after start", field="end")
    if expires_at is not None:
        expires_at = _aware(expires_at, "expires_at")
        if expires_at <= now:
            raise InvalidInput("expires_at must be in the future", field="expires_at")
    case_number = case_number.strip()
    reason = reason.strip()
    if not case_number or len(case_number) > 64:
        raise InvalidInput("case_number must be 1-64 characters", field="case_number")
    if not reason:
        raise InvalidInput("a hold needs a reason", field="reason")
    unique_ids = sorted(set(camera_ids))
    if not unique_ids:
        raise InvalidInput("name at least one camera", field="camera_ids")
    if len(unique_ids) > MAX_CAMERAS_PER_HOLD:
        raise InvalidInput(
            f"a hold covers at most {MAX_CAMERAS_PER_HOLD} cameras", field="camera_ids"
        )
    # Police search the register across organisations, so any existing camera will do; a DPO
    # or admin only reaches cameras of organisations they read (others do not exist for them).
    reader = None if actor.role is Role.police else actor
    camera_orgs: dict[int, int] = {}
    for cid in unique_ids:
        camera = registry_service.get_camera_or_raise(
            session=session, camera_id=cid, principal=reader
        )
        camera_orgs[cid] = camera.organisation_id
    if actor.role is Role.police:
        org_id = actor.organisation_id
    else:
        owners = set(camera_orgs.values())
        org_id = owners.pop() if len(owners) == 1 else actor.organisation_id
    hold = LegalHold(
        organisation_id=org_id,
        case_number=case_number,
        reason=reason,
        start=start,
        end=end,
        expires_at=expires_at,
        created_by=actor.user_id,
        created_at=now,
        export_request_id=export_request_id,
    )
    session.add(hold)
    session.flush()
    session.add_all(LegalHoldCamera(hold_id=hold.id, camera_id=cid) for cid in unique_ids)
    session.flush()
    for org in _audit_orgs(hold, camera_orgs):
        audit.record(
            session,
            action="retention.hold_created",
            actor=actor,
            organisation_id=org,
            target_type="legal_hold",
            target_id=hold.id,
            details=_details(hold, unique_ids),
            at=now,
        )
    logger.info("legal hold %s created on %s cameras", hold.id, len(unique_ids))
    return hold


def _can_see(actor: Principal, hold: LegalHold, camera_orgs: Iterable[int]) -> bool:
    if actor.is_admin or hold.created_by == actor.user_id:
        return True
    if actor.role is Role.dpo:
        orgs = actor.readable_org_ids() or set()
        return hold.organisation_id in orgs or any(o in orgs for o in camera_orgs)
    return False


def _can_release(actor: Principal, hold: LegalHold, camera_orgs: Iterable[int]) -> bool:
    if actor.is_admin or hold.created_by == actor.user_id:
        return True
    # A DPO releases only what lies entirely within the organisations they answer for.
    return actor.role is Role.dpo and all(actor.can_read_org(o) for o in camera_orgs)


def get_hold_or_raise(*, session: Session, actor: Principal, hold_id: int) -> LegalHold:
    """One hold the actor may see (others are not found)."""
    actor.require_role(*HOLD_ROLES)
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound("legal hold not found", field="hold_id")
    cams = camera_ids_of(session=session, hold_ids=[hold.id])[hold.id]
    if not _can_see(actor, hold, _camera_orgs(session, cams).values()):
        raise NotFound("legal hold not found", field="hold_id")
    return hold


def list_holds(
    *,
    session: Session,
    actor: Principal,
    page: PageParams,
    camera_id: int | None = None,
    active: bool | None = None,
    case_number: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[LegalHold], int]:
    """Holds the actor may see, newest first, and how many there are."""
    actor.require_role(*HOLD_ROLES)
    now = now or utcnow()
    stmt = select(LegalHold)
    if actor.role is Role.police:
        stmt = stmt.where(LegalHold.created_by == actor.user_id)
    if camera_id is not None:
        stmt = stmt.where(
            LegalHold.id.in_(
                select(LegalHoldCamera.hold_id).where(LegalHoldCamera.camera_id == camera_id)
            )
        )
    if case_number:
        stmt = stmt.where(LegalHold.case_number == case_number)
    if active is not None:
        live = LegalHold.released_at.is_(None) & (
            LegalHold.expires_at.is_(None) | (LegalHold.expires_at > now)
        )
        stmt = stmt.where(live if active else ~live)
    holds = list(session.scalars(stmt.order_by(LegalHold.id.desc())))
    if not actor.is_admin and actor.role is not Role.police:
        # Holds are few (one per investigation), and whether a DPO sees one depends on the
        # organisations of its cameras, which only the registry knows: filter here.
        cams = camera_ids_of(session=session, hold_ids=[h.id for h in holds])
        org_cache: dict[int, int] = {}
        visible = []
        for hold in holds:
            missing = [c for c in cams[hold.id] if c not in org_cache]
            org_cache.update(_camera_orgs(session, missing))
            orgs = [org_cache[c] for c in cams[hold.id] if c in org_cache]
            if _can_see(actor, hold, orgs):
                visible.append(hold)
        holds = visible
    return holds[page.offset : page.offset + page.limit], len(holds)


def release_hold(
    *,
    session: Session,
    actor: Principal,
    hold_id: int,
    reason: str,
    now: dt.datetime | None = None,
) -> LegalHold:
    """Release a hold: its footage falls back under the normal retention rules."""
    now = now or utcnow()
    hold = get_hold_or_raise(session=session, actor=actor, hold_id=hold_id)
    cams = camera_ids_of(session=session, hold_ids=[hold.id])[hold.id]
    camera_orgs = _camera_orgs(session, cams)
    if not _can_release(actor, hold, camera_orgs.values()):
        raise Forbidden("only the creator of the hold or a DPO/admin of its cameras may release it")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("releasing a hold needs a reason", field="reason")
    if hold.released_at is not None:
        raise Conflict("the hold is already released", code="hold_released")
    if hold.expires_at is not None and hold.expires_at <= now:
        raise Conflict("the hold has already expired", code="hold_expired")
    hold.released_at = now
    hold.released_by = actor.user_id
    hold.release_reason = reason
    session.flush()
    for org in _audit_orgs(hold, camera_orgs):
        audit.record(
            session,
            action="retention.hold_released",
            actor=actor,
            organisation_id=org,
            target_type="legal_hold",
            target_id=hold.id,
            details={**_details(hold, cams), "release_reason": reason},
            at=now,
        )
    logger.info("legal hold %s released", hold.id)
    return hold


def expire_holds(*, session: Session, now: dt.datetime) -> list[LegalHold]:
    """Mark holds whose time ran out as released (reason "expired"), with an audit entry."""
    due = list(
        session.scalars(
            select(LegalHold)
            .where(
                LegalHold.released_at.is_(None),
                LegalHold.expires_at.is_not(None),
                LegalHold.expires_at <= now,
            )
            .order_by(LegalHold.id)
        )
    )
    for hold in due:
        assert hold.expires_at is not None
        hold.released_at = hold.expires_at
        hold.release_reason = "expired"
        cams = camera_ids_of(session=session, hold_ids=[hold.id])[hold.id]
        for org in _audit_orgs(hold, _camera_orgs(session, cams)):
            audit.record(
                session,
                action="retention.hold_expired",
                organisation_id=org,
                target_type="legal_hold",
                target_id=hold.id,
                details=_details(hold, cams),
                at=now,
            )
        logger.info("legal hold %s expired", hold.id)
    session.flush()
    return due


def lock_holds(session: Session) -> None:
    """Serialise "place a hold" with "delete a batch": whoever comes second sees the other's
    commit, so a hold committed at any moment wins over a sweep that has not yet deleted. On
    SQLite every transaction already holds the write lock (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_HOLD_LOCK})


def active_windows(
    *, session: Session, now: dt.datetime, camera_ids: Iterable[int] | None = None
) -> dict[int, list[HoldWindow]]:
    """Every hold active at `now`, by camera (of `camera_ids` only, if given): what the sweep
    must not touch."""
    stmt = (
        select(LegalHoldCamera.camera_id, LegalHold)
        .join(LegalHold, LegalHold.id == LegalHoldCamera.hold_id)
        .where(
            LegalHold.released_at.is_(None),
            LegalHold.expires_at.is_(None) | (LegalHold.expires_at > now),
        )
    )
    if camera_ids is not None:
        stmt = stmt.where(LegalHoldCamera.camera_id.in_(sorted(set(camera_ids))))
    rows = session.execute(stmt)
    out: dict[int, list[HoldWindow]] = defaultdict(list)
    for camera_id, hold in rows:
        out[camera_id].append(window_of(hold))
    return dict(out)


def is_active(hold: LegalHold, now: dt.datetime) -> bool:
    return window_of(hold).active_at(now)


def window_of(hold: LegalHold) -> HoldWindow:
    return HoldWindow(
        hold_id=hold.id,
        start=hold.start,
        end=hold.end,
        expires_at=hold.expires_at,
        released_at=hold.released_at,
        case_number=hold.case_number,
    )


def count_active(*, session: Session, now: dt.datetime) -> int:
    return int(
        session.scalar(
            select(func.count(LegalHold.id)).where(
                LegalHold.released_at.is_(None),
                LegalHold.expires_at.is_(None) | (LegalHold.expires_at > now),
            )
        )
        or 0
    )
