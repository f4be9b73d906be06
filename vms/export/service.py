"""The police export workflow: request (with a legal hold), approval, build, download, close.

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
import hashlib
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from registry import service as registry_service
from registry.models import Camera, CameraMode, CameraStatus
from retention import service as retention_service
from vms.core import audit
from vms.core.auth import Principal
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import count_rows, utcnow
from vms.core.errors import Conflict, ErrorItem, Forbidden, InvalidInput, NotFound
from vms.core.models import Role, User
from vms.core.pagination import PageParams
from vms.export import manifest as mf
from vms.export import package, signing, sources
from vms.export.models import ExportRequest, ExportStatus
from vms.export.schemas import (
    CameraNearPage,
    CameraNearRead,
    ExportCreate,
    ExportRead,
    FootageRead,
    LegalGround,
    OwnerRead,
)

logger = logging.getLogger(__name__)

EXPORTS_DIR = "exports"
MAX_RANGE = dt.timedelta(days=7)
# Clocks of the police client and the server disagree a little; a range may end "now".
CLOCK_SKEW = dt.timedelta(minutes=2)
MAX_RADIUS_M = 50_000.0
READ_ROLES = (Role.police, Role.dpo, Role.admin)
DECIDE_ROLES = (Role.dpo, Role.admin)
DOWNLOADABLE = (ExportStatus.ready, ExportStatus.downloaded)

SessionFactory = sessionmaker[Session] | Callable[[], Session]


class BuildStopped(Exception):
    """The worker is shutting down: the build is abandoned and the request queued again."""


@contextmanager
def scope(factory: SessionFactory) -> Iterator[Session]:
    """`vms.core.db.session_scope` for any session factory (tests join their transaction)."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def iso(value: dt.datetime) -> str:
    """ISO 8601 UTC to the second, as messages and the audit log show times."""
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_read(req: ExportRequest) -> ExportRead:
    return ExportRead.model_validate(
        {
            **{c.key: getattr(req, c.key) for c in ExportRequest.__table__.columns},
            "legal_ground": LegalGround(
                category=req.legal_ground_category, text=req.legal_ground_text
            ),
        }
    )


def _orgs(req: ExportRequest) -> list[int]:
    return sorted({req.requester_organisation_id, req.organisation_id})


def _audit(
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
    return to_read(req)


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


def _camera_label(camera: Camera) -> str:
    return f"camera {camera.id} ({camera.name})"


def _refusal(
    camera: Camera, data: ExportCreate, now: dt.datetime, session: Session
) -> ErrorItem | None:
    """Why footage of this camera in the range may not be requested, or None."""
    field = "camera_ids"
    label = _camera_label(camera)
    pol = registry_service.policy(session=session, camera_id=camera.id, at=now)
    if camera.status is CameraStatus.decommissioned and camera.decommissioned_at is not None:
        ended = camera.decommissioned_at + dt.timedelta(hours=pol.max_retention_hours)
        if ended <= now:
            return ErrorItem(
                "no_access",
                f"{label} was withdrawn from the register at {iso(camera.decommissioned_at)} and "
                f"its retention ended at {iso(ended)}: its owner holds no footage that may be "
                "handed over",
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
            f"{iso(data.start)}, before the retention cut-off {iso(cutoff)}; footage past "
            "retention must not leave, even if it has not been deleted yet",
            "start",
        )
    if sources.footage_count(session=session, camera=camera, start=data.start, end=data.end) == 0:
        return ErrorItem(
            "no_footage",
            f"{label} has no recorded footage between {iso(data.start)} and {iso(data.end)}",
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
            f"the range must not end in the future (now is {iso(now)})",
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
    _audit(
        session,
        req,
        "export.requested",
        actor,
        {
            "start": iso(start),
            "end": iso(end),
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
    _audit(session, req, "export.approved", actor, {"note": req.decision_note, "retry": retry})
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
    _audit(session, req, "export.rejected", actor, {"reason": req.decision_note})
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
    _delete_package(settings, req)
    req.status = ExportStatus.closed
    req.closed_at = utcnow()
    req.closed_by = actor.user_id
    req.close_reason = reason.strip() if reason else None
    req.keep_hold = keep_hold
    session.flush()
    _audit(
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
        raise Conflict(f"the package expired at {iso(req.expires_at)}", code="expired")
    path = settings.data_dir / req.package_path
    if not path.is_file():
        raise Conflict("the package file is missing on the server", code="missing")
    req.status = ExportStatus.downloaded
    req.download_count += 1
    req.last_downloaded_at = now
    session.flush()
    assert req.package_sha256 is not None
    _audit(
        session,
        req,
        "export.downloaded",
        actor,
        {"package_sha256": req.package_sha256, "download": req.download_count},
    )
    return Download(path=path, filename=Path(req.package_path).name, sha256=req.package_sha256)


# --- the near search ----------------------------------------------------------------------


def search_near(
    *,
    session: Session,
    actor: Principal,
    lat: float,
    lon: float,
    radius_m: float,
    start: dt.datetime | None,
    end: dt.datetime | None,
    page: PageParams,
) -> CameraNearPage:
    """Registered cameras near a point, across organisations: owner, contact, purpose, mode,
    retention and (for a range) whether footage exists. Never stream details."""
    actor.require_role(Role.police, Role.admin)
    if not -90 <= lat <= 90:
        raise InvalidInput("lat must be between -90 and 90", field="lat")
    if not -180 <= lon <= 180:
        raise InvalidInput("lon must be between -180 and 180", field="lon")
    if not 0 < radius_m <= MAX_RADIUS_M:
        raise InvalidInput(f"radius_m must be in (0, {MAX_RADIUS_M:.0f}]", field="radius_m")
    if (start is None) != (end is None):
        raise InvalidInput("give both start and end, or neither", field="end")
    if start is not None and end is not None and end <= start:
        raise InvalidInput("end must be after start", field="end")
    now = utcnow()
    hits = []
    for camera, distance in sources.cameras_in_box(
        session=session, lat=lat, lon=lon, radius_m=radius_m
    ):
        pol = registry_service.policy(session=session, camera_id=camera.id, at=now)
        if camera.status is CameraStatus.decommissioned and (
            camera.decommissioned_at is None
            or camera.decommissioned_at + dt.timedelta(hours=pol.max_retention_hours) <= now
        ):
            continue  # withdrawn and past retention: nothing left to ask for
        hits.append((camera, distance, pol.max_retention_hours))
    window = hits[page.offset : page.offset + page.limit]
    names: dict[int, str] = {}
    items = []
    for camera, distance, retention_hours in window:
        if camera.organisation_id not in names:
            names[camera.organisation_id] = sources.organisation_name(
                session=session, organisation_id=camera.organisation_id
            )
        footage = None
        if start is not None and end is not None:
            cutoff = now - dt.timedelta(hours=retention_hours)
            count = (
                0
                if camera.mode is CameraMode.live
                else sources.footage_count(
                    session=session, camera=camera, start=max(start, cutoff), end=end
                )
                if end > cutoff
                else 0
            )
            footage = FootageRead(
                start=start, end=end, segments=count, available=count > 0, retention_cutoff=cutoff
            )
        assert camera.lat is not None
        assert camera.lon is not None
        items.append(
            CameraNearRead(
                id=camera.id,
                name=camera.name,
                owner=OwnerRead(
                    organisation_id=camera.organisation_id,
                    organisation=names[camera.organisation_id],
                    contact_name=camera.owner_contact_name,
                    contact_email=camera.owner_contact_email,
                    contact_phone=camera.owner_contact_phone,
                ),
                address=camera.address,
                lat=camera.lat,
                lon=camera.lon,
                direction_deg=camera.direction_deg,
                distance_m=round(distance, 1),
                purpose=camera.purpose,
                purpose_category=camera.purpose_category,
                mode=camera.mode,
                status=camera.status,
                retention_hours=retention_hours,
                footage=footage,
            )
        )
    audit.record(
        session,
        action="export.camera_search",
        actor=actor,
        target_type="camera_search",
        details={
            "lat": lat,
            "lon": lon,
            "radius_m": radius_m,
            "start": iso(start) if start else None,
            "end": iso(end) if end else None,
            "hits": len(hits),
        },
    )
    return CameraNearPage(items=items, total=len(hits), limit=page.limit, offset=page.offset)


# --- building -----------------------------------------------------------------------------


def _user_info(session: Session, user_id: int | None) -> dict[str, Any] | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None:
        return {"user_id": user_id}
    return {
        "user_id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "organisation_id": user.organisation_id,
        "organisation": sources.organisation_name(
            session=session, organisation_id=user.organisation_id
        ),
    }


def _package_input(
    session: Session, settings: Settings, req: ExportRequest
) -> package.PackageInput:
    cameras = []
    for cid in req.camera_ids:
        camera = registry_service.get_camera_or_raise(session=session, camera_id=cid)
        segs, gaps = sources.segments(session=session, camera=camera, start=req.start, end=req.end)
        inputs = []
        for s in segs:
            try:
                path = sources.segment_file(settings.data_dir, s)
            except ValueError as exc:
                raise package.PackageError(f"segment {s.id} has an invalid path") from exc
            inputs.append(
                package.SegmentInput(
                    id=s.id,
                    path=path,
                    start=s.start,
                    end=s.end,
                    sha256=s.sha256,
                    size_bytes=s.size_bytes,
                    mask_plan_hash=s.mask_plan_hash,
                )
            )
        if not inputs:
            raise package.PackageError(f"{_camera_label(camera)} has no footage left in the range")
        hashes = sorted({s.mask_plan_hash for s in segs if s.mask_plan_hash})
        cameras.append(
            package.CameraInput(
                camera_id=camera.id,
                name=camera.name,
                registry=sources.camera_snapshot(session=session, camera=camera),
                legal_basis=sources.basis_snapshot(session=session, camera=camera),
                mask_plans=sources.mask_plans(session=session, camera=camera, hashes=hashes),
                segments=inputs,
                recorded_gaps=[{"start": g.start, "end": g.end, "reason": g.reason} for g in gaps],
            )
        )
    requester = _user_info(session, req.requester_id) or {}
    requester |= {"officer": req.officer, "unit": req.unit}
    return package.PackageInput(
        export_id=req.id,
        case_number=req.case_number,
        legal_ground={"category": req.legal_ground_category.value, "text": req.legal_ground_text},
        reason=req.reason,
        requested_by=requester,
        approved_by=(_user_info(session, req.decided_by) or {}) | {"note": req.decision_note},
        requested_at=req.created_at,
        approved_at=req.decided_at,
        start=req.start,
        end=req.end,
        cameras=cameras,
    )


def claim(*, session_factory: SessionFactory, export_id: int) -> bool:
    """Move an approved request to `building`; False if someone else did (or it is not approved)."""
    with scope(session_factory) as session:
        result = session.execute(
            update(ExportRequest)
            .where(ExportRequest.id == export_id, ExportRequest.status == ExportStatus.approved)
            .values(status=ExportStatus.building, progress=0, build_started_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if not getattr(result, "rowcount", 0):
            return False
        req = session.get(ExportRequest, export_id)
        assert req is not None
        _audit(session, req, "export.build_started", None)
    return True


def next_approved(*, session_factory: SessionFactory) -> int | None:
    with scope(session_factory) as session:
        return session.scalar(
            select(ExportRequest.id)
            .where(ExportRequest.status == ExportStatus.approved)
            .order_by(ExportRequest.decided_at, ExportRequest.id)
            .limit(1)
        )


def build_package(
    *,
    session_factory: SessionFactory,
    settings: Settings,
    export_id: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> ExportRead:
    """Claim an approved request, build and sign its package, record the outcome.

    Runs without a transaction open during the (long) cut; progress is written in short ones.
    """
    if not claim(session_factory=session_factory, export_id=export_id):
        with scope(session_factory) as session:
            req = session.get(ExportRequest, export_id)
            if req is None:
                raise NotFound("export request not found", field="export_id")
            raise Conflict(f"the request is {req.status.value}, not approved", code="status")
    box = SecretBox(settings.secret_key_bytes())
    try:
        with scope(session_factory) as session:
            req = session.get(ExportRequest, export_id)
            assert req is not None
            inp = _package_input(session, settings, req)
            key = signing_key(session=session, settings=settings, box=box)
            name = package.package_name(req.id, req.case_number)
        last = [0]

        def progress(pct: int) -> None:
            if should_stop():
                raise BuildStopped
            if pct - last[0] < 5 and pct < 100:
                return
            last[0] = pct
            with scope(session_factory) as s:
                s.execute(
                    update(ExportRequest)
                    .where(ExportRequest.id == export_id)
                    .values(progress=min(pct, 99))
                    .execution_options(synchronize_session=False)
                )

        out = settings.data_dir / EXPORTS_DIR / name
        built = package.build(inp, out_path=out, key=key, progress=progress)
    except BuildStopped:
        _requeue(session_factory, export_id, "the server stopped during the build")
        raise
    except (package.PackageError, signing.SigningKeyError) as exc:
        return _failed(session_factory, export_id, str(exc))
    except Exception as exc:
        logger.exception("building export %s failed", export_id)
        return _failed(
            session_factory, export_id, f"internal error while building ({type(exc).__name__})"
        )
    manifest_sha = hashlib.sha256(mf.canonical_json(built.manifest)).hexdigest()
    with scope(session_factory) as session:
        req = session.get(ExportRequest, export_id)
        assert req is not None
        now = utcnow()
        req.status = ExportStatus.ready
        req.progress = 100
        req.built_at = now
        req.package_path = f"{EXPORTS_DIR}/{name}"
        req.package_sha256 = built.sha256
        req.package_size = built.size_bytes
        req.manifest_sha256 = manifest_sha
        req.expires_at = now + dt.timedelta(hours=settings.export_ttl_hours)
        session.flush()
        _audit(
            session,
            req,
            "export.built",
            None,
            {
                "package_sha256": built.sha256,
                "manifest_sha256": manifest_sha,
                "size_bytes": built.size_bytes,
                "expires_at": iso(req.expires_at),
                "signing_key": built.manifest["signing_key"]["fingerprint_sha256"],
                "cameras": [
                    {
                        "camera_id": c["camera_id"],
                        "frames": c["video"]["frames"],
                        "method": c["video"]["method"],
                        "segments": [s["id"] for s in c["segments"]],
                        "gaps": len(c["gaps"]),
                        "mask_plan_hashes": [p["hash"] for p in c["mask_plans"]],
                    }
                    for c in built.manifest["cameras"]
                ],
                "warnings": built.warnings,
            },
        )
        logger.info("export %s built: %s bytes", export_id, built.size_bytes)
        return to_read(req)


def _failed(session_factory: SessionFactory, export_id: int, reason: str) -> ExportRead:
    logger.warning("export %s failed: %s", export_id, reason)
    with scope(session_factory) as session:
        req = session.get(ExportRequest, export_id)
        assert req is not None
        req.status = ExportStatus.failed
        req.failure_reason = reason
        session.flush()
        _audit(session, req, "export.build_failed", None, {"reason": reason})
        return to_read(req)


def _requeue(session_factory: SessionFactory, export_id: int, reason: str) -> None:
    with scope(session_factory) as session:
        req = session.get(ExportRequest, export_id)
        if req is None or req.status is not ExportStatus.building:
            return
        req.status = ExportStatus.approved
        req.progress = 0
        session.flush()
        _audit(session, req, "export.build_requeued", None, {"reason": reason})


def requeue_interrupted(*, session_factory: SessionFactory) -> int:
    """Builds a previous run left half-done go back to `approved` (their temp files are gone)."""
    with scope(session_factory) as session:
        stuck = list(
            session.scalars(
                select(ExportRequest.id).where(ExportRequest.status == ExportStatus.building)
            )
        )
    for export_id in stuck:
        _requeue(session_factory, export_id, "the server restarted during the build")
    return len(stuck)


def _delete_package(settings: Settings, req: ExportRequest) -> None:
    if req.package_path is None:
        return
    path = settings.data_dir / req.package_path
    path.unlink(missing_ok=True)


def expire_packages(
    *, session_factory: SessionFactory, settings: Settings, now: dt.datetime | None = None
) -> int:
    """Delete packages past `export_ttl_hours`; the requests become `expired` (holds stay until
    the request is closed)."""
    now = now or utcnow()
    with scope(session_factory) as session:
        due = list(
            session.scalars(
                select(ExportRequest).where(
                    ExportRequest.status.in_(DOWNLOADABLE),
                    or_(ExportRequest.expires_at.is_(None), ExportRequest.expires_at <= now),
                )
            )
        )
        for req in due:
            _delete_package(settings, req)
            req.status = ExportStatus.expired
            session.flush()
            _audit(session, req, "export.expired", None, {"package_sha256": req.package_sha256})
        return len(due)


def cleanup_partial_builds(settings: Settings) -> None:
    """Temp folders of builds interrupted by a crash."""
    root = settings.data_dir / EXPORTS_DIR
    if root.is_dir():
        for tmp in root.glob(".build-*"):
            shutil.rmtree(tmp, ignore_errors=True)
