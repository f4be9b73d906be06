"""Registry services: cameras. Other packages go through these functions, never through the
models: the pipeline reads `cameras_in_service`, `stream_url`, `source_credentials`; retention
and export read `get_camera_or_raise`, `policy`, `camera_facts`; the police search reads
`cameras_near`; exports cite plans through `mask_plans`.

Over 500 lines on purpose: it is the camera table's one service, and its parts lean on each
other (the writes use the same getters and `camera_facts` as the reads other packages make,
`update_camera` the retention-shortening helpers); what stood alone already moved out (below).

Request-to-column mapping and the save checks live in `registry.columns`, sites in
`registry.sites`.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from permits import service as permit_service
from permits.policy import (
    BasisFacts,
    CameraFacts,
    Policy,
    Window,
    permit_status,
    policy_for,
)
from registry import columns, passthrough
from registry.models import Camera, CameraMode, CameraStatus, MaskPlanVersion
from registry.schemas import (
    CameraCreate,
    CameraRead,
    CameraUpdate,
    PermitStatus,
    PolicyRead,
)
from vms.core import accounts, audit
from vms.core.auth import Principal
from vms.core.crypto import SecretBox, join_credentials, join_query_secrets
from vms.core.db import count_rows, utcnow
from vms.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from vms.core.models import Role
from vms.core.pagination import PageParams

logger = logging.getLogger(__name__)

# Who may do what with the registry. Police get camera details through the export search,
# never through the registry (403).
WRITERS = (Role.admin, Role.facility_manager)
READERS = (Role.admin, Role.facility_manager, Role.dpo, Role.operator)
REPORT_READERS = (Role.admin, Role.facility_manager, Role.dpo)


def get_camera(*, session: Session, camera_id: int) -> Camera | None:
    return session.get(Camera, camera_id)


def get_camera_or_raise(
    *, session: Session, camera_id: int, principal: Principal | None = None
) -> Camera:
    """The camera, if it exists and the principal (when given) may read its organisation."""
    camera = session.get(Camera, camera_id)
    if camera is None or (
        principal is not None and not principal.can_read_org(camera.organisation_id)
    ):
        raise NotFound("camera not found", field="camera_id")
    return camera


def parse_schedule(raw: list[dict[str, Any]] | None) -> tuple[Window, ...]:
    out: list[Window] = []
    for w in raw or []:
        out.append(
            Window(
                days=tuple(w["days"]),
                start=dt.time.fromisoformat(w["start"]),
                end=dt.time.fromisoformat(w["end"]),
            )
        )
    return tuple(out)


def camera_facts(*, session: Session, camera: Camera) -> CameraFacts:
    basis = (
        permit_service.basis_facts(session=session, basis_id=camera.legal_basis_id)
        if camera.legal_basis_id is not None
        else None
    )
    return _facts(camera, basis)


def policy(*, session: Session, camera_id: int, at: dt.datetime | None = None) -> Policy:
    """`permits.policy_for` for a stored camera."""
    camera = get_camera_or_raise(session=session, camera_id=camera_id)
    return policy_for(camera_facts(session=session, camera=camera), at or utcnow())


def camera_permit_status(*, session: Session, camera: Camera, at: dt.datetime | None = None) -> str:
    return permit_status(camera_facts(session=session, camera=camera), at or utcnow())


def list_active_camera_ids(*, session: Session) -> list[int]:
    """Ids of every camera that is not decommissioned."""
    return list(
        session.scalars(
            select(Camera.id)
            .where(Camera.status != CameraStatus.decommissioned)
            .order_by(Camera.id)
        )
    )


def cameras_in_service(*, session: Session) -> list[tuple[Camera, CameraFacts]]:
    """Every camera that is not decommissioned, with its policy facts, in two queries however
    many cameras there are (the pipeline reconciles against this every poll)."""
    cameras = list(
        session.scalars(
            select(Camera).where(Camera.status != CameraStatus.decommissioned).order_by(Camera.id)
        )
    )
    return list(zip(cameras, facts_many(session=session, cameras=cameras), strict=True))


def mask_plans(
    *, session: Session, camera: Camera, hashes: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    """The plan behind each hash a recording cites (None if the registry no longer has it)."""
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(hashes)
    if camera.mask_plan_hash in out:
        out[camera.mask_plan_hash] = camera.mask_plan
    missing = [h for h, plan in out.items() if plan is None]
    if missing:
        rows = session.execute(
            select(MaskPlanVersion.plan_hash, MaskPlanVersion.plan).where(
                MaskPlanVersion.camera_id == camera.id, MaskPlanVersion.plan_hash.in_(missing)
            )
        )
        for digest, plan in rows:
            out[digest] = plan
    return out


EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def cameras_near(
    *, session: Session, lat: float, lon: float, radius_m: float
) -> list[tuple[Camera, float]]:
    """Cameras within `radius_m` of (lat, lon), nearest first, across all organisations (the
    police search decides who may ask).

    A bounding box on the indexed lat/lon columns narrows the rows; the exact distance decides.
    """
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    coslat = max(math.cos(math.radians(lat)), 1e-6)
    dlon = min(180.0, math.degrees(radius_m / (EARTH_RADIUS_M * coslat)))
    stmt = select(Camera).where(
        Camera.lat.is_not(None),
        Camera.lon.is_not(None),
        Camera.lat.between(lat - dlat, lat + dlat),
    )
    lo, hi = lon - dlon, lon + dlon
    # A box crossing the antimeridian takes the whole band and lets the distance decide.
    if lo >= -180 and hi <= 180:
        stmt = stmt.where(Camera.lon.between(lo, hi))
    hits = []
    for camera in session.scalars(stmt.order_by(Camera.id)):
        assert camera.lat is not None
        assert camera.lon is not None
        d = distance_m(lat, lon, camera.lat, camera.lon)
        if d <= radius_m:
            hits.append((camera, d))
    hits.sort(key=lambda x: (x[1], x[0].id))
    return hits


def plan_masks(*, camera: Camera) -> bool:
    """Whether the camera's plan anonymises anything (False also without a plan)."""
    return bool(columns.plan_masks(camera.mask_plan, camera.mask_plan_hash))


def source_credentials(*, camera: Camera, box: SecretBox) -> tuple[str | None, str | None]:
    if not camera.source_secret:
        return None, None
    data = json.loads(box.decrypt(camera.source_secret))
    return data.get("username"), data.get("password")


def stream_url(*, camera: Camera, box: SecretBox) -> str | None:
    """The RTSP URL with credentials (userinfo and query), for the decoder only: never log or
    return it."""
    if camera.source_url is None:
        return None
    if not camera.source_secret:
        return camera.source_url
    data = json.loads(box.decrypt(camera.source_secret))
    url = join_credentials(camera.source_url, data.get("username"), data.get("password"))
    return join_query_secrets(url, [tuple(p) for p in data.get("query", [])])


def _facts(camera: Camera, basis: BasisFacts | None) -> CameraFacts:
    return CameraFacts(
        id=camera.id,
        mode=camera.mode.value,
        status=camera.status.value,
        retention_hours=camera.retention_hours,
        basis=basis,
        schedule=parse_schedule(camera.schedule),
        timezone=camera.timezone,
        plan_masks=columns.plan_masks(camera.mask_plan, camera.mask_plan_hash),
        retention_kept_before=camera.retention_kept_before,
        retention_kept_hours=camera.retention_kept_hours,
    )


def facts_many(*, session: Session, cameras: Sequence[Camera]) -> list[CameraFacts]:
    """Facts for many cameras with one query for their bases."""
    bases = permit_service.basis_facts_many(
        session=session, basis_ids=(c.legal_basis_id for c in cameras if c.legal_basis_id)
    )
    return [_facts(c, bases.get(c.legal_basis_id) if c.legal_basis_id else None) for c in cameras]


def create_camera(
    *,
    session: Session,
    actor: Principal | None,
    box: SecretBox,
    data: CameraCreate,
    file_roots: Sequence[Path],
    organisation_id: int | None = None,
) -> Camera:
    """Register a camera. 422 naming each field when it breaks a rule or exceeds its basis."""
    if actor is not None:
        actor.require_role(*WRITERS)
    org_id = accounts.target_org(
        session=session,
        actor=actor,
        requested=organisation_id if organisation_id is not None else data.organisation_id,
    )
    valid, errors = columns.validate_camera(
        session=session, organisation_id=org_id, data=data, box=box, file_roots=file_roots
    )
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    return insert_camera(session=session, actor=actor, valid=valid)


def insert_camera(
    *, session: Session, actor: Principal | None, valid: columns.ValidCamera, via: str = "api"
) -> Camera:
    """Store a camera that validate_camera passed (the import checks all rows first)."""
    org_id = valid.organisation_id
    plan = valid.plan
    camera = Camera(organisation_id=org_id, **valid.values)
    session.add(camera)
    session.flush()
    if plan is not None:
        _record_plan(session, camera, plan, actor)
    audit.record(
        session,
        action="camera.create",
        actor=actor,
        organisation_id=org_id,
        target_type="camera",
        target_id=camera.id,
        details={
            "name": camera.name,
            "via": via,
            "mode": camera.mode.value,
            "retention_hours": camera.retention_hours,
            "legal_basis_id": camera.legal_basis_id,
            "status": camera.status.value,
            "source_kind": camera.source_kind.value,
            "has_credentials": camera.source_secret is not None,
            "mask_plan_hash": camera.mask_plan_hash,
        },
    )
    return camera


def _record_plan(
    session: Session,
    camera: Camera,
    plan: tuple[dict[str, Any], str],
    actor: Principal | None,
) -> bool:
    """Keep the plan and its hash current and remember every version; False if unchanged."""
    body, digest = plan
    if camera.mask_plan_hash == digest:
        return False
    camera.mask_plan = body
    camera.mask_plan_hash = digest
    session.add(
        MaskPlanVersion(
            camera_id=camera.id,
            plan_hash=digest,
            plan=body,
            created_by=actor.user_id if actor else None,
        )
    )
    session.flush()
    return True


def update_camera(
    *,
    session: Session,
    actor: Principal,
    box: SecretBox,
    camera_id: int,
    data: CameraUpdate,
    file_roots: Sequence[Path],
) -> Camera:
    """Change a camera; the result is checked against its basis like a new one."""
    actor.require_role(*WRITERS)
    camera = get_camera_or_raise(session=session, camera_id=camera_id, principal=actor)
    actor.require_write(camera.organisation_id, "camera")
    if camera.status is CameraStatus.decommissioned:
        raise Conflict(
            f"camera {camera.id} is decommissioned: it stays in the register and can no longer "
            "be changed",
            field="status",
        )
    fields = sorted(data.model_fields_set)
    keep, errors = columns.kept_secret(camera, data.source)
    values, plan, more = columns.columns(
        data, fields, box=box, keep_secret=keep, file_roots=file_roots
    )
    errors += more
    if not any(e.field in columns.CHECKED for e in errors):
        merged = {name: getattr(camera, name) for name in columns.CHECKED} | {
            k: v for k, v in values.items() if k in columns.CHECKED
        }
        body, digest = plan if plan is not None else (camera.mask_plan, camera.mask_plan_hash)
        errors += columns.check_links(
            session=session,
            organisation_id=camera.organisation_id,
            values=merged,
            plan_masks=columns.plan_masks(body, digest),
        )
    if not any(e.field == "source" for e in errors):
        after_values = {
            k: values.get(k, getattr(camera, k)) for k in ("recording_path", "source_kind", "mode")
        }
        errors += passthrough.check_camera(
            **after_values, plan=plan[0] if plan is not None else camera.mask_plan
        )
        errors += columns.check_live_profile(
            mode=after_values["mode"],
            live_profile_token=values.get(
                "source_live_profile_token", camera.source_live_profile_token
            ),
        )
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    old_status = camera.status
    now = utcnow()
    before = _retention_now(session, camera, now)
    # What a DPO reading the log needs: old and new values of the fields that decide what is
    # kept and shown (never of the source: it may carry credentials).
    values_changed = {
        k: {"from": _plain(getattr(camera, k)), "to": _plain(v)}
        for k, v in values.items()
        if k in _AUDITED_VALUES and getattr(camera, k) != v
    }
    changed = sorted(columns.field_of(k) for k, v in values.items() if getattr(camera, k) != v)
    for key, value in values.items():
        setattr(camera, key, value)
    session.flush()
    after = _retention_now(session, camera, now)
    retention_note = _protect_older_footage(camera, before, after, now)
    if plan is not None and _record_plan(session, camera, plan, actor):
        changed.append("mask_plan")
        audit.record(
            session,
            action="camera.mask_plan",
            actor=actor,
            organisation_id=camera.organisation_id,
            target_type="camera",
            target_id=camera.id,
            details={"mask_plan_hash": camera.mask_plan_hash},
        )
    changed = sorted(set(changed) - {"status"})
    if changed:
        details: dict[str, Any] = {"fields": changed, "values": values_changed}
        if before != after:
            details["effective_retention_hours"] = {"from": before, "to": after}
        if retention_note is not None:
            details["older_footage"] = retention_note
        audit.record(
            session,
            action="camera.update",
            actor=actor,
            organisation_id=camera.organisation_id,
            target_type="camera",
            target_id=camera.id,
            details=details,
        )
    if camera.status is not old_status:
        audit.record(
            session,
            action="camera.status",
            actor=actor,
            organisation_id=camera.organisation_id,
            target_type="camera",
            target_id=camera.id,
            details={"from": old_status.value, "to": camera.status.value},
        )
    return camera


_AUDITED_VALUES = (
    "mode",
    "retention_hours",
    "legal_basis_id",
    "status",
    "timezone",
    "site_id",
    "recording_path",
)


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def _retention_now(session: Session, camera: Camera, now: dt.datetime) -> int:
    """How long new footage of the camera may be kept now (camera wish capped by the basis)."""
    return policy_for(camera_facts(session=session, camera=camera), now).max_retention_hours


def _protect_older_footage(
    camera: Camera, before: int, after: int, now: dt.datetime
) -> dict[str, Any] | None:
    """A shortened retention applies from now on: footage recorded before keeps the retention
    it was recorded under until a DPO or admin confirms the purge. A lengthened one past the
    kept retention ends the protection."""
    if after < before:
        camera.retention_kept_before = now
        camera.retention_kept_hours = max(before, camera.retention_kept_hours or 0)
        return {
            "kept_hours": camera.retention_kept_hours,
            "recorded_before": now.isoformat(),
            "until": "a DPO or admin confirms the purge",
        }
    if camera.retention_kept_hours is not None and after >= camera.retention_kept_hours:
        camera.retention_kept_before = camera.retention_kept_hours = None
    return None


def confirm_retention_shortening(*, session: Session, actor: Principal, camera_id: int) -> Camera:
    """Let the shortened retention reach footage recorded before the change (the next sweep
    deletes what is now past it). The organisation's DPO or an admin decides; audited with
    the old and new retention."""
    if actor.role not in (Role.admin, Role.dpo):
        raise Forbidden("confirming a purge is decided by the organisation's DPO or an admin")
    camera = get_camera_or_raise(session=session, camera_id=camera_id, principal=actor)
    if camera.retention_kept_hours is None or camera.retention_kept_before is None:
        raise Conflict(
            f"camera {camera.id} has no shortened retention waiting for confirmation",
            code="nothing_to_confirm",
        )
    now = utcnow()
    new = policy_for(camera_facts(session=session, camera=camera), now).max_retention_hours
    details = {
        "from_hours": camera.retention_kept_hours,
        "to_hours": new,
        "recorded_before": camera.retention_kept_before.isoformat(),
    }
    camera.retention_kept_before = camera.retention_kept_hours = None
    session.flush()
    audit.record(
        session,
        action="camera.retention_purge_confirmed",
        actor=actor,
        organisation_id=camera.organisation_id,
        target_type="camera",
        target_id=camera.id,
        details=details,
    )
    return camera


def retry_passthrough(*, session: Session, actor: Principal, camera_id: int) -> Camera:
    """See `registry.passthrough.retry`: facility managers and admins of the camera's
    organisation."""
    actor.require_role(*WRITERS)
    camera = get_camera_or_raise(session=session, camera_id=camera_id, principal=actor)
    actor.require_write(camera.organisation_id, "camera")
    passthrough.retry(session=session, actor=actor, camera=camera)
    return camera


def decommission_camera(*, session: Session, actor: Principal, camera_id: int) -> Camera:
    """Take a camera out of service for good; it stays in the register for 5 years."""
    actor.require_role(*WRITERS)
    camera = get_camera_or_raise(session=session, camera_id=camera_id, principal=actor)
    actor.require_write(camera.organisation_id, "camera")
    if camera.status is CameraStatus.decommissioned:
        raise Conflict(f"camera {camera.id} is already decommissioned", field="status")
    old = camera.status
    camera.status = CameraStatus.decommissioned
    camera.decommissioned_at = utcnow()
    session.flush()
    audit.record(
        session,
        action="camera.decommission",
        actor=actor,
        organisation_id=camera.organisation_id,
        target_type="camera",
        target_id=camera.id,
        details={"from": old.value, "to": camera.status.value},
    )
    return camera


# --- cameras: reading ----------------------------------------------------------------------


def to_read(*, session: Session, camera: Camera) -> CameraRead:
    """The API view of a camera already loaded (and checked) by the caller."""
    return columns.camera_read(
        camera,
        camera_facts(session=session, camera=camera),
        utcnow(),
        passthrough.state_of(session=session, camera_id=camera.id),
    )


def read_camera(*, session: Session, principal: Principal, camera_id: int) -> CameraRead:
    """One camera the principal may read."""
    principal.require_role(*READERS)
    camera = get_camera_or_raise(session=session, camera_id=camera_id, principal=principal)
    return to_read(session=session, camera=camera)


def camera_policy(
    *, session: Session, principal: Principal, camera_id: int, at: dt.datetime | None = None
) -> PolicyRead:
    """What the camera may do now (or at `at`), with the reasons for every denial."""
    principal.require_role(*READERS)
    camera = get_camera_or_raise(session=session, camera_id=camera_id, principal=principal)
    at = at or utcnow()
    p = policy_for(camera_facts(session=session, camera=camera), at)
    return PolicyRead(
        camera_id=camera.id,
        at=at,
        may_view_live=p.may_view_live,
        may_record=p.may_record,
        max_retention_hours=p.max_retention_hours,
        masking_required=p.masking_required,
        active_now=p.active_now,
        reasons=list(p.reasons),
        basis_id=p.basis_id,
    )


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_cameras(
    *,
    session: Session,
    principal: Principal,
    page: PageParams,
    organisation_id: int | None = None,
    site_id: int | None = None,
    mode: CameraMode | None = None,
    status: CameraStatus | None = None,
    permit_status_is: PermitStatus | None = None,
    q: str | None = None,
) -> tuple[list[CameraRead], int]:
    """Cameras the principal can read, filtered; `q` searches name, purpose and address."""
    principal.require_role(*READERS)
    stmt = select(Camera)
    scope = principal.read_scope(organisation_id)
    if scope is not None:
        stmt = stmt.where(Camera.organisation_id.in_(scope))
    if site_id is not None:
        stmt = stmt.where(Camera.site_id == site_id)
    if mode is not None:
        stmt = stmt.where(Camera.mode == mode)
    if status is not None:
        stmt = stmt.where(Camera.status == status)
    if q and "\x00" in q:
        raise InvalidInput("must not contain NUL characters", field="q")
    if q:
        pattern = _like(q)
        stmt = stmt.where(
            or_(
                Camera.name.ilike(pattern, escape="\\"),
                Camera.purpose.ilike(pattern, escape="\\"),
                Camera.address.ilike(pattern, escape="\\"),
            )
        )
    stmt = stmt.order_by(Camera.id)
    now = utcnow()
    if permit_status_is is None:
        total = count_rows(session, stmt)
        rows = list(session.scalars(stmt.limit(page.limit).offset(page.offset)))
        facts = facts_many(session=session, cameras=rows)
        return _reads(session, list(zip(rows, facts, strict=True)), now), total
    # permit_status is computed, not stored: filter in Python (registers are thousands, not
    # millions, of cameras).
    rows = list(session.scalars(stmt))
    facts = facts_many(session=session, cameras=rows)
    hits = [
        (c, f)
        for c, f in zip(rows, facts, strict=True)
        if permit_status(f, now) == permit_status_is
    ]
    window = hits[page.offset : page.offset + page.limit]
    return _reads(session, window, now), len(hits)


def _reads(
    session: Session, cameras: Sequence[tuple[Camera, CameraFacts]], now: dt.datetime
) -> list[CameraRead]:
    states = passthrough.states_of(session=session, camera_ids=(c.id for c, _ in cameras))
    return [columns.camera_read(c, f, now, states.get(c.id)) for c, f in cameras]
