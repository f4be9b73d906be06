"""Registry services: cameras and sites. Other packages go through these functions, never
through the models.

The shared functions at the top (`get_camera_or_raise`, `camera_facts`, `policy`,
`camera_permit_status`, `list_active_camera_ids`, `source_credentials`, `stream_url`) are called
by the pipeline, retention and export packages: keep their names and signatures.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from masking import PlanError, parse_plan, plan_hash
from permits import service as permit_service
from permits.policy import (
    BasisFacts,
    CameraFacts,
    Policy,
    Window,
    conflicts,
    permit_status,
    policy_for,
)
from registry.models import Camera, CameraMode, CameraStatus, MaskPlanVersion, Site, SourceKind
from registry.schemas import (
    CameraCreate,
    CameraRead,
    CameraUpdate,
    ConflictRead,
    FileSource,
    Location,
    OnvifSource,
    OwnerContact,
    PermitStatus,
    PolicyRead,
    RtspSource,
    ScheduleWindow,
    Signage,
    SiteCreate,
    SourceRead,
)
from vms.core import accounts, audit
from vms.core.auth import Principal
from vms.core.crypto import SecretBox, join_credentials, scrub, split_credentials
from vms.core.db import count_rows, utcnow
from vms.core.errors import Conflict, ErrorItem, InvalidInput, NotFound
from vms.core.pagination import PageParams

logger = logging.getLogger(__name__)


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
    return CameraFacts(
        id=camera.id,
        mode=camera.mode.value,
        status=camera.status.value,
        retention_hours=camera.retention_hours,
        basis=basis,
        schedule=parse_schedule(camera.schedule),
        timezone=camera.timezone,
    )


def policy(*, session: Session, camera_id: int, at: dt.datetime | None = None) -> Policy:
    """`permits.policy_for` for a stored camera."""
    camera = get_camera_or_raise(session=session, camera_id=camera_id)
    return policy_for(camera_facts(session=session, camera=camera), at or utcnow())


def camera_permit_status(*, session: Session, camera: Camera, at: dt.datetime | None = None) -> str:
    return permit_status(camera_facts(session=session, camera=camera), at or utcnow())


def list_active_camera_ids(*, session: Session) -> list[int]:
    """Cameras the pipeline should consider (everything not decommissioned)."""
    return list(
        session.scalars(
            select(Camera.id)
            .where(Camera.status != CameraStatus.decommissioned)
            .order_by(Camera.id)
        )
    )


def source_credentials(*, camera: Camera, box: SecretBox) -> tuple[str | None, str | None]:
    if not camera.source_secret:
        return None, None
    data = json.loads(box.decrypt(camera.source_secret))
    return data.get("username"), data.get("password")


def stream_url(*, camera: Camera, box: SecretBox) -> str | None:
    """The RTSP URL with credentials, for the decoder only: never log or return it."""
    if camera.source_url is None:
        return None
    user, password = source_credentials(camera=camera, box=box)
    return join_credentials(camera.source_url, user, password)


def _facts(camera: Camera, basis: BasisFacts | None) -> CameraFacts:
    return CameraFacts(
        id=camera.id,
        mode=camera.mode.value,
        status=camera.status.value,
        retention_hours=camera.retention_hours,
        basis=basis,
        schedule=parse_schedule(camera.schedule),
        timezone=camera.timezone,
    )


def facts_many(*, session: Session, cameras: Sequence[Camera]) -> list[CameraFacts]:
    """Facts for many cameras with one query for their bases."""
    bases = permit_service.basis_facts_many(
        session=session, basis_ids=(c.legal_basis_id for c in cameras if c.legal_basis_id)
    )
    return [_facts(c, bases.get(c.legal_basis_id) if c.legal_basis_id else None) for c in cameras]


# --- organisation scoping ------------------------------------------------------------------


def target_org(*, session: Session, actor: Principal | None, requested: int | None) -> int:
    """The organisation a new record goes into: the caller's own unless they name another,
    which only admin may (others get 404 for an organisation they cannot see, 403 otherwise)."""
    if actor is None:
        if requested is None:
            raise InvalidInput("organisation_id is required", field="organisation_id")
        org_id = requested
    else:
        org_id = requested if requested is not None else actor.organisation_id
        actor.require_write(org_id, "organisation")
    accounts.get_organisation_or_raise(session=session, organisation_id=org_id)
    return org_id


def read_scope(principal: Principal, organisation_id: int | None) -> set[int] | None:
    """Organisations a read covers; None is all of them."""
    if organisation_id is not None:
        principal.require_read(organisation_id, "organisation")
        return {organisation_id}
    return principal.readable_org_ids()


# --- sites ---------------------------------------------------------------------------------


def get_site_or_raise(
    *, session: Session, site_id: int, principal: Principal | None = None
) -> Site:
    site = session.get(Site, site_id)
    if site is None or (principal is not None and not principal.can_read_org(site.organisation_id)):
        raise NotFound("site not found", field="site_id")
    return site


def list_sites(
    *, session: Session, principal: Principal, page: PageParams, organisation_id: int | None = None
) -> tuple[list[Site], int]:
    stmt = select(Site)
    scope = read_scope(principal, organisation_id)
    if scope is not None:
        stmt = stmt.where(Site.organisation_id.in_(scope))
    total = count_rows(session, stmt)
    rows = session.scalars(stmt.order_by(Site.id).limit(page.limit).offset(page.offset))
    return list(rows), total


def list_organisation_sites(*, session: Session, organisation_id: int) -> list[Site]:
    return list(session.scalars(select(Site).where(Site.organisation_id == organisation_id)))


def find_site(*, session: Session, organisation_id: int, name: str) -> Site | None:
    return session.scalar(
        select(Site)
        .where(Site.organisation_id == organisation_id, Site.name == name)
        .order_by(Site.id)
        .limit(1)
    )


def create_site(
    *,
    session: Session,
    actor: Principal | None,
    data: SiteCreate,
    organisation_id: int | None = None,
) -> Site:
    org_id = target_org(
        session=session,
        actor=actor,
        requested=organisation_id if organisation_id is not None else data.organisation_id,
    )
    if find_site(session=session, organisation_id=org_id, name=data.name) is not None:
        raise Conflict(f"a site named {data.name!r} already exists", field="name")
    site = Site(organisation_id=org_id, name=data.name, address=data.address)
    session.add(site)
    session.flush()
    audit.record(
        session,
        action="site.create",
        actor=actor,
        organisation_id=org_id,
        target_type="site",
        target_id=site.id,
        details={"name": site.name},
    )
    return site


def update_site(
    *, session: Session, actor: Principal, site_id: int, changes: dict[str, Any]
) -> Site:
    site = get_site_or_raise(session=session, site_id=site_id, principal=actor)
    actor.require_write(site.organisation_id, "site")
    if "name" in changes:
        if changes["name"] is None:
            raise InvalidInput("must not be null", field="name")
        other = find_site(
            session=session, organisation_id=site.organisation_id, name=changes["name"]
        )
        if other is not None and other.id != site.id:
            raise Conflict(f"a site named {changes['name']!r} already exists", field="name")
    changed = sorted(k for k, v in changes.items() if getattr(site, k) != v)
    for key, value in changes.items():
        setattr(site, key, value)
    session.flush()
    if changed:
        audit.record(
            session,
            action="site.update",
            actor=actor,
            organisation_id=site.organisation_id,
            target_type="site",
            target_id=site.id,
            details={"fields": changed},
        )
    return site


# --- cameras: turning a request into columns -----------------------------------------------

# Fields that PATCH may not set to null (the rest are optional on the record too).
_NOT_NULL = (
    "name",
    "owner_contact",
    "location",
    "purpose",
    "purpose_category",
    "mode",
    "retention_hours",
    "source",
    "timezone",
    "schedule",
    "signage",
    "status",
)
_DIRECT = ("site_id", "name", "purpose", "retention_hours", "legal_basis_id", "timezone")


def _source_columns(
    src: RtspSource | OnvifSource | FileSource,
    *,
    box: SecretBox,
    keep_secret: str | None,
    file_roots: Sequence[Path],
) -> tuple[dict[str, Any], list[ErrorItem]]:
    """Columns for a source. Credentials (separate or inside the URL) go encrypted into
    `source_secret`; the URL is stored without them."""
    cols: dict[str, Any] = {
        "source_kind": SourceKind(src.kind),
        "source_url": None,
        "source_host": None,
        "source_port": None,
        "source_profile_token": None,
        "source_path": None,
        "source_secret": None,
    }
    if isinstance(src, FileSource):
        path, error = _file_path(src.path, file_roots)
        if error:
            return cols, [ErrorItem("invalid", error, "source.path")]
        cols["source_path"] = path
        return cols, []
    username = src.username
    password = src.password.get_secret_value() if src.password is not None else None
    given = bool({"username", "password"} & src.model_fields_set)
    if isinstance(src, RtspSource):
        url, url_user, url_password = split_credentials(src.url)
        if url_user is not None or url_password is not None:
            username, password, given = url_user, url_password, True
        cols["source_url"] = url
    else:
        cols |= {
            "source_host": src.host,
            "source_port": src.port,
            "source_profile_token": src.profile_token,
        }
    if not given and keep_secret is not None:
        cols["source_secret"] = keep_secret
    elif username or password:
        cols["source_secret"] = box.encrypt(
            json.dumps({"username": username, "password": password})
        )
    return cols, []


def _file_path(raw: str, roots: Sequence[Path]) -> tuple[str | None, str | None]:
    """File sources may only read video under the configured roots: an API user must not be
    able to point the decoder at arbitrary files on the server."""
    if not roots:
        return None, "file sources are not enabled on this installation"
    path = Path(raw)
    if not path.is_absolute():
        path = roots[0] / path
    try:
        resolved = path.resolve()
    except (OSError, ValueError):
        return None, "is not a usable path"
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        return None, "must be inside the sample-media directory or the data directory"
    if not resolved.is_file():
        return None, "file not found"
    return str(resolved), None


def _mask_plan(
    raw: dict[str, Any] | None,
) -> tuple[tuple[dict[str, Any], str] | None, list[ErrorItem]]:
    """The normalised plan and its hash; null or {} is the explicit "no masking" plan."""
    try:
        plan = parse_plan(raw)
    except PlanError as exc:
        return None, [
            ErrorItem("invalid", e["msg"], f"mask_plan.{e['field']}" if e["field"] else "mask_plan")
            for e in exc.errors
        ]
    return (plan.model_dump(mode="json"), plan_hash(plan)), []


def _columns(
    data: CameraCreate | CameraUpdate,
    fields: Iterable[str],
    *,
    box: SecretBox,
    keep_secret: str | None,
    file_roots: Sequence[Path],
) -> tuple[dict[str, Any], tuple[dict[str, Any], str] | None, list[ErrorItem]]:
    """Column values for the given request fields, the mask plan if one was sent, and errors."""
    values: dict[str, Any] = {}
    plan: tuple[dict[str, Any], str] | None = None
    errors: list[ErrorItem] = []
    for name in fields:
        value = getattr(data, name)
        if value is None and name in _NOT_NULL:
            errors.append(ErrorItem("invalid", "must not be null", name))
        elif name in _DIRECT:
            values[name] = value
        elif name == "purpose_category":
            values[name] = value.value
        elif name == "mode":
            values[name] = CameraMode(value)
        elif name == "status":
            values[name] = CameraStatus(value)
        elif name == "owner_contact":
            values |= {
                "owner_contact_name": value.name,
                "owner_contact_email": str(value.email) if value.email else None,
                "owner_contact_phone": value.phone,
            }
        elif name == "location":
            values |= value.model_dump()
        elif name == "schedule":
            values["schedule"] = [w.model_dump() for w in value]
        elif name == "signage":
            values |= {"signage_posted": value.posted, "signage_text": value.text}
        elif name == "source":
            cols, errs = _source_columns(
                value, box=box, keep_secret=keep_secret, file_roots=file_roots
            )
            values |= cols
            errors += errs
        elif name == "mask_plan":
            plan, errs = _mask_plan(value)
            errors += errs
        # organisation_id is resolved by the caller.
    return values, plan, errors


_CHECKED = ("site_id", "legal_basis_id", "mode", "retention_hours", "status")


def _check_links(
    *, session: Session, organisation_id: int, values: dict[str, Any]
) -> list[ErrorItem]:
    """Site and basis must be the organisation's own; an active camera may not ask for more
    than its basis allows (a paused one may: it is saved, not run)."""
    errors: list[ErrorItem] = []
    site_id = values.get("site_id")
    if site_id is not None:
        site = session.get(Site, site_id)
        if site is None or site.organisation_id != organisation_id:
            errors.append(ErrorItem("not_found", f"site {site_id} not found", "site_id"))
    basis_id = values.get("legal_basis_id")
    basis: BasisFacts | None = None
    if basis_id is not None:
        basis = permit_service.basis_of_organisation(
            session=session, basis_id=basis_id, organisation_id=organisation_id
        )
        if basis is None:
            errors.append(
                ErrorItem("not_found", f"legal basis {basis_id} not found", "legal_basis_id")
            )
    if basis is not None and values["status"] is CameraStatus.active:
        facts = CameraFacts(
            id=0,
            mode=values["mode"].value,
            status=values["status"].value,
            retention_hours=values["retention_hours"],
            basis=basis,
        )
        errors += [ErrorItem("exceeds_basis", msg, field) for field, msg in conflicts(facts)]
    return errors


@dataclass(frozen=True)
class ValidCamera:
    """A checked camera request: column values and, if one was sent, the normalised mask plan."""

    organisation_id: int
    values: dict[str, Any]
    plan: tuple[dict[str, Any], str] | None


def validate_camera(
    *,
    session: Session,
    organisation_id: int,
    data: CameraCreate,
    box: SecretBox,
    file_roots: Sequence[Path],
) -> tuple[ValidCamera, list[ErrorItem]]:
    """Everything create_camera checks, without writing."""
    fields = [
        f
        for f in CameraCreate.model_fields
        # An omitted plan stays unset; an explicit null is the explicit "no masking" plan.
        if f != "organisation_id" and (f != "mask_plan" or f in data.model_fields_set)
    ]
    values, plan, errors = _columns(data, fields, box=box, keep_secret=None, file_roots=file_roots)
    if not any(e.field in _CHECKED for e in errors):
        errors += _check_links(session=session, organisation_id=organisation_id, values=values)
    return ValidCamera(organisation_id, values, plan), errors


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
    org_id = target_org(
        session=session,
        actor=actor,
        requested=organisation_id if organisation_id is not None else data.organisation_id,
    )
    valid, errors = validate_camera(
        session=session, organisation_id=org_id, data=data, box=box, file_roots=file_roots
    )
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    return insert_camera(session=session, actor=actor, valid=valid)


def insert_camera(
    *, session: Session, actor: Principal | None, valid: ValidCamera, via: str = "api"
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
    camera = get_camera_or_raise(session=session, camera_id=camera_id, principal=actor)
    actor.require_write(camera.organisation_id, "camera")
    if camera.status is CameraStatus.decommissioned:
        raise Conflict(
            f"camera {camera.id} is decommissioned: it stays in the register and can no longer "
            "be changed",
            field="status",
        )
    fields = sorted(data.model_fields_set)
    keep, errors = _kept_secret(camera, data.source)
    values, plan, more = _columns(data, fields, box=box, keep_secret=keep, file_roots=file_roots)
    errors += more
    if not any(e.field in _CHECKED for e in errors):
        merged = {name: getattr(camera, name) for name in _CHECKED} | {
            k: v for k, v in values.items() if k in _CHECKED
        }
        errors += _check_links(
            session=session, organisation_id=camera.organisation_id, values=merged
        )
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    old_status = camera.status
    changed = sorted(_field_of(k) for k, v in values.items() if getattr(camera, k) != v)
    for key, value in values.items():
        setattr(camera, key, value)
    session.flush()
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
        audit.record(
            session,
            action="camera.update",
            actor=actor,
            organisation_id=camera.organisation_id,
            target_type="camera",
            target_id=camera.id,
            details={"fields": changed},
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


def _endpoint(url: str | None, host: str | None, port: int | None) -> tuple[str | None, int | None]:
    if url is not None:
        parts = urlsplit(url)
        return parts.hostname, parts.port
    return host, port


def _kept_secret(
    camera: Camera, src: RtspSource | OnvifSource | FileSource | None
) -> tuple[str | None, list[ErrorItem]]:
    """A new source sent without credentials keeps the stored ones only if it still points at
    the same host and port: otherwise whoever may edit cameras could send the write-only
    password to a server of their choosing."""
    if src is None or isinstance(src, FileSource) or camera.source_secret is None:
        return None, []
    if src.kind != camera.source_kind.value:
        return None, []
    if {"username", "password"} & src.model_fields_set:
        return None, []
    new_url = src.url if isinstance(src, RtspSource) else None
    if new_url is not None and split_credentials(new_url)[1:] != (None, None):
        return None, []
    new = _endpoint(
        new_url,
        src.host if isinstance(src, OnvifSource) else None,
        src.port if isinstance(src, OnvifSource) else None,
    )
    old = _endpoint(camera.source_url, camera.source_host, camera.source_port)
    if new != old:
        return None, [
            ErrorItem(
                "credentials_required",
                "the source points at another host or port: give username and password again "
                "(or null for none)",
                "source.password",
            )
        ]
    return camera.source_secret, []


def _field_of(column: str) -> str:
    """The API field a column belongs to (audit entries name fields, never values)."""
    for prefix, name in (
        ("source_", "source"),
        ("owner_contact_", "owner_contact"),
        ("signage_", "signage"),
    ):
        if column.startswith(prefix):
            return name
    if column in ("address", "lat", "lon", "mount_height_m", "direction_deg"):
        return "location"
    return column


def decommission_camera(*, session: Session, actor: Principal, camera_id: int) -> Camera:
    """Take a camera out of service for good; it stays in the register for 5 years."""
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


def camera_read(camera: Camera, facts: CameraFacts, at: dt.datetime) -> CameraRead:
    """The API view of a camera: no credentials, computed permit status and conflicts."""
    return CameraRead(
        id=camera.id,
        organisation_id=camera.organisation_id,
        site_id=camera.site_id,
        name=camera.name,
        owner_contact=OwnerContact.model_construct(
            name=camera.owner_contact_name,
            email=camera.owner_contact_email,
            phone=camera.owner_contact_phone,
        ),
        location=Location.model_construct(
            address=camera.address,
            lat=camera.lat,
            lon=camera.lon,
            mount_height_m=camera.mount_height_m,
            direction_deg=camera.direction_deg,
        ),
        purpose=camera.purpose,
        purpose_category=camera.purpose_category,
        mode=camera.mode,
        retention_hours=camera.retention_hours,
        legal_basis_id=camera.legal_basis_id,
        permit_status=PermitStatus(permit_status(facts, at)),
        conflicts=[ConflictRead(field=f, msg=m) for f, m in conflicts(facts)],
        source=SourceRead(
            kind=camera.source_kind,
            url=scrub(camera.source_url) if camera.source_url else None,
            host=camera.source_host,
            port=camera.source_port,
            profile_token=camera.source_profile_token,
            path=camera.source_path,
            has_credentials=camera.source_secret is not None,
        ),
        timezone=camera.timezone,
        schedule=[ScheduleWindow.model_construct(**w) for w in camera.schedule or []],
        signage=Signage.model_construct(posted=camera.signage_posted, text=camera.signage_text),
        mask_plan=camera.mask_plan,
        mask_plan_hash=camera.mask_plan_hash,
        status=camera.status,
        decommissioned_at=camera.decommissioned_at,
        created_at=camera.created_at,
        updated_at=camera.updated_at,
    )


def read_camera(*, session: Session, principal: Principal, camera_id: int) -> CameraRead:
    camera = get_camera_or_raise(session=session, camera_id=camera_id, principal=principal)
    return camera_read(camera, camera_facts(session=session, camera=camera), utcnow())


def to_read(*, session: Session, camera: Camera) -> CameraRead:
    return camera_read(camera, camera_facts(session=session, camera=camera), utcnow())


def camera_policy(
    *, session: Session, principal: Principal, camera_id: int, at: dt.datetime | None = None
) -> PolicyRead:
    """What the camera may do now (or at `at`), with the reasons for every denial."""
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
    stmt = select(Camera)
    scope = read_scope(principal, organisation_id)
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
        return [camera_read(c, f, now) for c, f in zip(rows, facts, strict=True)], total
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
    return [camera_read(c, f, now) for c, f in window], len(hits)
