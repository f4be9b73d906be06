"""Turning a camera request into column values and back, and every check a save must pass.

Separate from `registry.service` because it is the one place that knows how API fields map to
columns (credentials encrypted out of URLs, file sources confined to their roots, mask plans
normalised and hashed, a new host never inheriting stored credentials) and what a save may
not ask for (a site or basis of another organisation, more than the basis allows).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from masking import PlanError, parse_plan, plan_hash
from permits import service as permit_service
from permits.policy import BasisFacts, CameraFacts, conflicts, permit_status
from registry import passthrough
from registry.models import (
    Camera,
    CameraMode,
    CameraStatus,
    PassthroughState,
    RecordingPath,
    Site,
    SourceKind,
)
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
    RtspSource,
    ScheduleWindow,
    Signage,
    SourceRead,
)
from vms.core.crypto import SecretBox, scrub, split_credentials, split_query_secrets
from vms.core.errors import ErrorItem

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
_DIRECT = (
    "site_id",
    "name",
    "purpose",
    "retention_hours",
    "legal_basis_id",
    "timezone",
    "record_fps",
    "record_height",
)


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
        "source_live_profile_token": None,
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
    query: list[tuple[str, str]] = []
    if isinstance(src, RtspSource):
        url, url_user, url_password = split_credentials(src.url)
        if url_user is not None or url_password is not None:
            username, password, given = url_user, url_password, True
        # `?user=admin&password=...` is a credential like userinfo: encrypted, never returned.
        url, query = split_query_secrets(url)
        given = given or bool(query)
        cols["source_url"] = url
    else:
        cols |= {
            "source_host": src.host,
            "source_port": src.port,
            "source_profile_token": src.profile_token,
            "source_live_profile_token": src.live_profile_token,
        }
    if not given and keep_secret is not None:
        cols["source_secret"] = keep_secret
    elif username or password or query:
        secret: dict[str, Any] = {"username": username, "password": password}
        if query:
            secret["query"] = query
        cols["source_secret"] = box.encrypt(json.dumps(secret))
    return cols, []


def _file_path(raw: str, roots: Sequence[Path]) -> tuple[str | None, str | None]:
    """File sources may only read video under the configured roots (sample media, import
    folder; never the data dir): an API user must not be able to point the decoder at arbitrary
    files on the server, another organisation's recordings above all. Outside the roots the
    answer is the same whether or not the file exists, so the check is no existence oracle."""
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
        return None, "must be inside the sample-media or import directory"
    if not resolved.is_file():
        return None, "file not found"
    return str(resolved), None


def plan_masks(plan: dict[str, Any] | None, digest: str | None) -> bool | None:
    """Whether a stored plan anonymises anything (None: no plan). Cached by hash: the
    pipeline asks for every camera on every registry poll."""
    if plan is None:
        return None
    if digest is not None:
        return _masks_by_hash(digest, json.dumps(plan, sort_keys=True))
    return _plan_masks(plan)


@functools.lru_cache(maxsize=4096)
def _masks_by_hash(_digest: str, plan_json: str) -> bool:
    return _plan_masks(json.loads(plan_json))


def _plan_masks(plan: dict[str, Any]) -> bool:
    try:
        return not parse_plan(plan).is_noop
    except PlanError:
        # A stored plan that no longer parses fails closed in the worker (anonymise all).
        return True


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


def columns(
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
        elif name == "recording_path":
            values[name] = RecordingPath(value)
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


CHECKED = ("site_id", "legal_basis_id", "mode", "retention_hours", "status")


def check_links(
    *,
    session: Session,
    organisation_id: int,
    values: dict[str, Any],
    plan_masks: bool | None = None,
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
            plan_masks=plan_masks,
        )
        errors += [
            ErrorItem("masking_required" if field == "mask_plan" else "exceeds_basis", msg, field)
            for field, msg in conflicts(facts)
        ]
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
    values, plan, errors = columns(data, fields, box=box, keep_secret=None, file_roots=file_roots)
    if "source_kind" in values:
        errors += passthrough.check_camera(
            recording_path=values["recording_path"],
            source_kind=values["source_kind"],
            mode=values["mode"],
            plan=plan[0] if plan is not None else None,
        )
        errors += check_live_profile(
            mode=values["mode"], live_profile_token=values.get("source_live_profile_token")
        )
    if not any(e.field in CHECKED for e in errors):
        errors += check_links(
            session=session,
            organisation_id=organisation_id,
            values=values,
            plan_masks=plan_masks(*plan) if plan is not None else None,
        )
    return ValidCamera(organisation_id, values, plan), errors


def check_live_profile(*, mode: Any, live_profile_token: str | None) -> list[ErrorItem]:
    """A live profile only where there is live view (a recording-only camera has none)."""
    if live_profile_token is None or CameraMode(mode) is not CameraMode.recording:
        return []
    return [
        ErrorItem(
            "live_profile_without_live_view",
            "a recording-only camera has no live view: leave out live_profile_token, or choose "
            "a mode with live view",
            "source.live_profile_token",
        )
    ]


def _endpoint(url: str | None, host: str | None, port: int | None) -> tuple[str | None, int | None]:
    if url is not None:
        parts = urlsplit(url)
        return parts.hostname, parts.port
    return host, port


def kept_secret(
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
    if new_url is not None and (
        split_credentials(new_url)[1:] != (None, None) or split_query_secrets(new_url)[1]
    ):
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


def field_of(column: str) -> str:
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


def camera_read(
    camera: Camera,
    facts: CameraFacts,
    at: dt.datetime,
    state: PassthroughState | None = None,
) -> CameraRead:
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
            live_profile_token=camera.source_live_profile_token,
            path=camera.source_path,
            has_credentials=camera.source_secret is not None,
        ),
        timezone=camera.timezone,
        schedule=[ScheduleWindow.model_construct(**w) for w in camera.schedule or []],
        signage=Signage.model_construct(posted=camera.signage_posted, text=camera.signage_text),
        mask_plan=camera.mask_plan,
        mask_plan_hash=camera.mask_plan_hash,
        record_fps=camera.record_fps,
        record_height=camera.record_height,
        recording_path=camera.recording_path,
        passthrough=(
            passthrough.to_read(state)
            if camera.recording_path == RecordingPath.passthrough or state is not None
            else None
        ),
        status=camera.status,
        retention_kept_before=camera.retention_kept_before,
        retention_kept_hours=camera.retention_kept_hours,
        decommissioned_at=camera.decommissioned_at,
        created_at=camera.created_at,
        updated_at=camera.updated_at,
    )
