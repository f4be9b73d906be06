"""The police export workflow: request (with a legal hold), approval, download, close.

The cross-organisation camera search is `vms.export.search`; building the package is the job in
`vms.export.build`.

Rules (docs/export.md has the reasoning):
- only `police` users request; they may name cameras of any organisation (their legal role),
  all of one organisation per request, which then approves or rejects (its `dpo` or `admin`);
- refusals are 422 with one item per problem: cameras of several organisations, a camera
  withdrawn from the register longer ago than its retention (`no_access`), a live-only camera,
  a range starting before the camera's retention cut-off, a camera without footage in the range;
- police see their organisation's requests; a DPO sees requests for the organisations assigned to
  them; an admin sees all; only the requesting officer downloads the package.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import service as registry_service
from registry.schemas import CameraMode, CameraStatus
from retention import service as retention_service
from vms.core import audit, signing
from vms.core.auth import Principal
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import count_rows, utcnow
from vms.core.errors import Conflict, ErrorItem, Forbidden, InvalidInput, NotFound
from vms.core.models import Role
from vms.core.pagination import PageParams
from vms.core.times import iso_seconds
from vms.export import sources
from vms.export.models import ExportRequest, ExportStatus
from vms.export.schemas import (
    ExportCreate,
    ExportRead,
    LegalGround,
    WithheldRead,
)

if TYPE_CHECKING:
    from registry.models import Camera

logger = logging.getLogger(__name__)

EXPORTS_DIR = "exports"
MAX_RANGE = dt.timedelta(days=7)
# Clocks of the police client and the server disagree a little; a range may end "now".
CLOCK_SKEW = dt.timedelta(minutes=2)
READ_ROLES = (Role.police, Role.dpo, Role.admin)
DECIDE_ROLES = (Role.dpo, Role.admin)
DOWNLOADABLE = (ExportStatus.ready, ExportStatus.downloaded)


def to_read(req: ExportRequest, session: Session | None = None) -> ExportRead:
    """The API view; with a session, also the footage in the range that will not leave."""
    return ExportRead.model_validate(
        {
            **{c.key: getattr(req, c.key) for c in ExportRequest.__table__.columns},
            "legal_ground": LegalGround(
                category=req.legal_ground_category, text=req.legal_ground_text
            ),
            "withheld": withheld(session, req) if session is not None else [],
        }
    )


def withheld(session: Session, req: ExportRequest) -> list[WithheldRead]:
    """Per camera, the quarantined segments in the request's range (not in any package)."""
    out = []
    for cid in req.camera_ids:
        camera = registry_service.get_camera(session=session, camera_id=cid)
        if camera is None:
            continue
        rows = sources.withheld(session=session, camera=camera, start=req.start, end=req.end)
        if rows:
            out.append(
                WithheldRead(
                    camera_id=cid,
                    segments=len(rows),
                    seconds=round(sum((r.end - r.start).total_seconds() for r in rows), 3),
                    reason="quarantined",
                )
            )
    return out


def _orgs(req: ExportRequest) -> list[int]:
    return sorted({req.requester_organisation_id, req.organisation_id})


def audit_request(
    session: Session,
    req: ExportRequest,
    action: str,
    actor: Principal | None,
    details: dict[str, Any] | None = None,
) -> None:
    """One entry per organisation involved, so each side's DPO finds the whole story."""
    base = {
        "export_id": req.id,
        "case_number": req.case_number,
        "camera_ids": list(req.camera_ids),
        "status": req.status.value,
    }
    for org in _orgs(req):
        audit.record(
            session,
            action=action,
            actor=actor,
            organisation_id=org,
            target_type="export_request",
            target_id=req.id,
            details={**base, **(details or {})},
        )


# --- the signing key ----------------------------------------------------------------------


def signing_key(*, session: Session, settings: Settings, box: SecretBox) -> signing.SigningKey:
    """The installation's signing key, created (and the creation audited) on first use."""
    key, created = signing.load_or_create(data_dir=settings.data_dir, box=box)
    if created:
        audit.record(
            session,
            action="export.signing_key_created",
            target_type="signing_key",
            target_id=key.fingerprint[:16],
            details={"algorithm": signing.ALGORITHM, "fingerprint_sha256": key.fingerprint},
        )
    return key


# --- reading ------------------------------------------------------------------------------


def _can_see(actor: Principal, req: ExportRequest) -> bool:
    if actor.is_admin:
        return True
    if actor.role is Role.police:
        return req.requester_organisation_id == actor.organisation_id
    if actor.role is Role.dpo:
        return actor.can_read_org(req.organisation_id)
    return False


def get_request_or_raise(*, session: Session, actor: Principal, export_id: int) -> ExportRequest:
    """One request the actor may see (others are not found)."""
    actor.require_role(*READ_ROLES)
    req = session.get(ExportRequest, export_id)
    if req is None or not _can_see(actor, req):
        raise NotFound("export request not found", field="export_id")
    return req


def read_request(*, session: Session, actor: Principal, export_id: int) -> ExportRead:
    req = get_request_or_raise(session=session, actor=actor, export_id=export_id)
    audit.record(
        session,
        action="export.viewed",
        actor=actor,
        organisation_id=actor.organisation_id,
        target_type="export_request",
        target_id=req.id,
        details={"status": req.status.value},
    )
    return to_read(req, session)


def list_requests(
    *,
    session: Session,
    actor: Principal,
    page: PageParams,
    status: ExportStatus | None = None,
    case_number: str | None = None,
) -> tuple[list[ExportRequest], int]:
    """Requests the actor may see, newest first."""
    actor.require_role(*READ_ROLES)
    stmt = select(ExportRequest)
    if actor.role is Role.police:
        stmt = stmt.where(ExportRequest.requester_organisation_id == actor.organisation_id)
    elif not actor.is_admin:
        stmt = stmt.where(ExportRequest.organisation_id.in_(actor.readable_org_ids() or set()))
    if status is not None:
        stmt = stmt.where(ExportRequest.status == status)
    if case_number:
        stmt = stmt.where(ExportRequest.case_number == case_number)
    total = count_rows(session, stmt)
    rows = session.scalars(
        stmt.order_by(ExportRequest.id.desc()).limit(page.limit).offset(page.offset)
    )
    return list(rows), total


# --- requesting ---------------------------------------------------------------------------


def camera_label(camera: Camera) -> str:
    return f"camera {camera.id} ({camera.name})"


def _refusal(
    camera: Camera, data: ExportCreate, now: dt.datetime, session: Session
) -> ErrorItem | None:
    """Why footage of this camera in the range may not be requested, or None."""
    field = "camera_ids"
    label = camera_label(camera)
    pol = registry_service.policy(session=session, camera_id=camera.id, at=now)
    if camera.status is CameraStatus.decommissioned and camera.decommissioned_at is not None:
        ended = camera.decommissioned_at + dt.timedelta(hours=pol.max_retention_hours)
        if ended <= now:
            return ErrorItem(
                "no_access",
                f"{label} was withdrawn from the register at "
                f"{iso_seconds(camera.decommissioned_at)} and its retention ended at "
                f"{iso_seconds(ended)}: its owner holds no footage that may be handed over",
                field,
            )
    if camera.mode is CameraMode.live:
        return ErrorItem(
            "live_only", f"{label} is live-only: it records nothing that could be exported", field
        )
    cutoff = now - dt.timedelta(hours=pol.max_retention_hours)
    if data.start < cutoff:
        return ErrorItem(
            "past_retention",
            f"{label} may keep footage for {pol.max_retention_hours} hours: the range starts at "
            f"{iso_seconds(data.start)}, before the retention cut-off {iso_seconds(cutoff)}; "
            "footage past retention must not leave, even if it has not been deleted yet",
            "start",
        )
    if sources.footage_count(session=session, camera=camera, start=data.start, end=data.end) == 0:
        held = sources.withheld(session=session, camera=camera, start=data.start, end=data.end)
        if held:
            return ErrorItem(
                "only_quarantined",
                f"{label} has {len(held)} segment(s) between {iso_seconds(data.start)} and "
                f"{iso_seconds(data.end)}, all quarantined: recorded as the camera masked it "
                "and not covered by a passing mask check, they leave only once re-masked",
                field,
            )
        return ErrorItem(
            "no_footage",
            f"{label} has no recorded footage between {iso_seconds(data.start)} and "
            f"{iso_seconds(data.end)}",
            field,
        )
    return None


def create_request(
    *, session: Session, actor: Principal, data: ExportCreate, now: dt.datetime | None = None
) -> ExportRequest:
    """File a police request and place a legal hold on the footage it covers."""
    actor.require_role(Role.police)
    now = now or utcnow()
    start, end = data.start.astimezone(dt.UTC), data.end.astimezone(dt.UTC)
    if end <= start:
        raise InvalidInput("end must be after start", field="end", code="invalid_range")
    if end > now + CLOCK_SKEW:
        raise InvalidInput(
            f"the range must not end in the future (now is {iso_seconds(now)})",
            field="end",
            code="invalid_range",
        )
    if end - start > MAX_RANGE:
        raise InvalidInput(
            "a request covers at most 7 days: split longer ranges",
            field="end",
            code="invalid_range",
        )
    data = data.model_copy(update={"start": start, "end": end})
    cameras: list[Camera] = []
    for cid in data.camera_ids:
        camera = registry_service.get_camera(session=session, camera_id=cid)
        if camera is None:
            raise NotFound(f"camera {cid} not found", field="camera_ids")
        cameras.append(camera)
    owners = sorted({c.organisation_id for c in cameras})
    if len(owners) > 1:
        raise InvalidInput(
            "the cameras belong to several organisations: file one request per organisation "
            "(each approves its own footage)",
            field="camera_ids",
            code="multiple_organisations",
        )
    items = [i for c in cameras if (i := _refusal(c, data, now, session)) is not None]
    if items:
        raise InvalidInput(items[0].msg, items=items)
    req = ExportRequest(
        requester_id=actor.user_id,
        requester_organisation_id=actor.organisation_id,
        organisation_id=owners[0],
        camera_ids=list(data.camera_ids),
        case_number=data.case_number,
        legal_ground_category=data.legal_ground.category,
        legal_ground_text=data.legal_ground.text.strip(),
        officer=data.officer,
        unit=data.unit,
        reason=data.reason,
        start=start,
        end=end,
        status=ExportStatus.requested,
        progress=0,
        created_at=now,
        updated_at=now,
    )
    session.add(req)
    session.flush()
    audit_request(
        session,
        req,
        "export.requested",
        actor,
        {
            "start": iso_seconds(start),
            "end": iso_seconds(end),
            "legal_ground": {
                "category": req.legal_ground_category.value,
                "text": req.legal_ground_text,
            },
            "officer": req.officer,
            "unit": req.unit,
            "reason": req.reason,
        },
    )
    hold = retention_service.create_hold(
        session=session,
        actor=actor,
        camera_ids=req.camera_ids,
        start=start,
        end=end,
        case_number=req.case_number,
        reason=f"export request {req.id}: {req.reason}",
        expires_at=None,
        export_request_id=req.id,
        now=now,
    )
    req.hold_id = hold.id
    session.flush()
    logger.info("export request %s filed for %s cameras, hold %s", req.id, len(cameras), hold.id)
    return req


# --- deciding -----------------------------------------------------------------------------


def _decidable(session: Session, actor: Principal, export_id: int) -> ExportRequest:
    actor.require_role(*DECIDE_ROLES)
    req = get_request_or_raise(session=session, actor=actor, export_id=export_id)
    if not actor.can_read_org(req.organisation_id):
        raise NotFound("export request not found", field="export_id")
    return req


def approve(
    *, session: Session, actor: Principal, export_id: int, note: str | None = None
) -> ExportRequest:
    """Approve a request (or retry a failed build): the worker builds the package next."""
    req = _decidable(session, actor, export_id)
    if req.status not in (ExportStatus.requested, ExportStatus.failed):
        raise Conflict(
            f"the request is {req.status.value}, not waiting for approval", code="status"
        )
    retry = req.status is ExportStatus.failed
    req.status = ExportStatus.approved
    req.decided_by = actor.user_id
    req.decided_at = utcnow()
    req.decision_note = note.strip() if note else None
    req.progress = 0
    req.failure_reason = None
    session.flush()
    audit_request(
        session, req, "export.approved", actor, {"note": req.decision_note, "retry": retry}
    )
    return req


def _release_hold(session: Session, actor: Principal, req: ExportRequest, reason: str) -> None:
    if req.hold_id is None:
        return
    # Already released or expired: nothing is pinned any more.
    with contextlib.suppress(Conflict):
        retention_service.release_hold(
            session=session, actor=actor, hold_id=req.hold_id, reason=reason
        )


def reject(*, session: Session, actor: Principal, export_id: int, reason: str) -> ExportRequest:
    """Refuse a request; its legal hold is released (nothing will be exported)."""
    req = _decidable(session, actor, export_id)
    if req.status is not ExportStatus.requested:
        raise Conflict(
            f"the request is {req.status.value}, not waiting for approval", code="status"
        )
    req.status = ExportStatus.rejected
    req.decided_by = actor.user_id
    req.decided_at = utcnow()
    req.decision_note = reason.strip()
    session.flush()
    audit_request(session, req, "export.rejected", actor, {"reason": req.decision_note})
    _release_hold(session, actor, req, f"export request {req.id} rejected: {req.decision_note}")
    return req


def close(
    *,
    session: Session,
    actor: Principal,
    settings: Settings,
    export_id: int,
    keep_hold: bool,
    reason: str | None,
) -> ExportRequest:
    """Close a request: the package is deleted; the hold is released unless the police keep it."""
    req = get_request_or_raise(session=session, actor=actor, export_id=export_id)
    if not (actor.is_admin or actor.user_id == req.requester_id):
        raise Forbidden("only the requesting officer or an admin may close the request")
    if req.status is ExportStatus.closed:
        raise Conflict("the request is already closed", code="status")
    if req.status is ExportStatus.building:
        raise Conflict("the package is being built: close it when the build ends", code="status")
    delete_package(settings, req)
    req.status = ExportStatus.closed
    req.closed_at = utcnow()
    req.closed_by = actor.user_id
    req.close_reason = reason.strip() if reason else None
    req.keep_hold = keep_hold
    session.flush()
    audit_request(
        session, req, "export.closed", actor, {"keep_hold": keep_hold, "reason": req.close_reason}
    )
    if not keep_hold:
        _release_hold(session, actor, req, f"export request {req.id} closed")
    return req


# --- downloading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    path: Path
    filename: str
    sha256: str


def download(*, session: Session, actor: Principal, settings: Settings, export_id: int) -> Download:
    """The package file for the requesting officer; every download is audited."""
    req = get_request_or_raise(session=session, actor=actor, export_id=export_id)
    if actor.user_id != req.requester_id:
        raise Forbidden("only the requesting officer may download the package")
    now = utcnow()
    if req.status not in DOWNLOADABLE or req.package_path is None:
        raise Conflict(f"the request is {req.status.value}: no package to download", code="status")
    if req.expires_at is not None and req.expires_at <= now:
        raise Conflict(f"the package expired at {iso_seconds(req.expires_at)}", code="expired")
    path = settings.data_dir / req.package_path
    if not path.is_file():
        raise Conflict("the package file is missing on the server", code="missing")
    req.status = ExportStatus.downloaded
    req.download_count += 1
    req.last_downloaded_at = now
    session.flush()
    assert req.package_sha256 is not None
    audit_request(
        session,
        req,
        "export.downloaded",
        actor,
        {"package_sha256": req.package_sha256, "download": req.download_count},
    )
    return Download(path=path, filename=Path(req.package_path).name, sha256=req.package_sha256)


def delete_package(settings: Settings, req: ExportRequest) -> None:
    if req.package_path is None:
        return
    path = settings.data_dir / req.package_path
    path.unlink(missing_ok=True)
