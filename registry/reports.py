"""What DPOs and the public see: the register (förteckning) with the GDPR Art. 30 fields, the
compliance report and the transparency map."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from masking import PlanError, parse_plan
from permits import service as permit_service
from permits.policy import (
    DAYS,
    EXPIRING_WITHIN,
    JUSTIFICATION_THRESHOLD_HOURS,
    BasisFacts,
    CameraFacts,
    permit_status,
    policy_for,
)
from registry import passthrough
from registry.models import (
    Camera,
    CameraMode,
    CameraStatus,
    PassthroughStatus,
    RecordingPath,
    Site,
)
from registry.schemas import (
    ComplianceItem,
    ComplianceReport,
    GeoFeature,
    GeoFeatureCollection,
    GeoPoint,
    GeoProperties,
    PassthroughCamera,
    PermitStatus,
    RegisterEntry,
    RegisterRead,
)
from registry.service import REPORT_READERS, facts_many
from vms.core import accounts, audit
from vms.core.auth import Principal
from vms.core.csvout import to_csv
from vms.core.db import utcnow
from vms.core.models import Role
from vms.core.times import iso_seconds

# kamerabevakningslagen: the register and the assessment are kept 5 years after surveillance ends.
REGISTER_KEEP_YEARS = 5

# --- the register, the compliance report and the transparency map --------------------------

_SUBJECTS = {
    "crime_prevention": "people in the monitored area: residents, visitors, passers-by",
    "property_protection": "people in or near the property: residents, tenants, visitors, "
    "passers-by",
    "traffic_management": "road users and pedestrians; vehicles and licence plates",
    "care_supervision": "care recipients, staff and visitors",
    "safety": "people in the monitored area: staff, visitors, the public",
    "other": "people in the monitored area",
}
_SECURITY = (
    "access by personal accounts with roles, limited to the controller's organisation; every "
    "access and export is written to a tamper-evident audit log; privacy masking before any "
    "viewing, recording or export; camera credentials encrypted at rest; footage deleted "
    "automatically when the retention period ends"
)


class SharedRecipients(Protocol):
    """Who receives each camera's video under sharing agreements in force at `at` (issue 14):
    `sharing.service.recipients_in_force`, wired in by `vms.api.create_app` (the sharing domain
    sits above the registry, so the registry cannot import it)."""

    def __call__(
        self, *, session: Session, camera_ids: Sequence[int], at: dt.datetime
    ) -> dict[int, list[str]]: ...


def _recipients(live_only: bool, shared: Sequence[str]) -> str:
    """The register's recipients: the controller's staff, the police through the audited
    export where footage exists, and every recipient of an agreement in force."""
    parts = ["authorised staff of the controller"]
    if not live_only:
        parts.append("the Police Authority and prosecutors on request, through the audited export")
    return "; ".join([*parts, *shared])


def _years_before(at: dt.datetime, years: int) -> dt.datetime:
    try:
        return at.replace(year=at.year - years)
    except ValueError:  # 29 February
        return at.replace(year=at.year - years, day=28)


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _days_text(days: Sequence[str]) -> str:
    """mon,tue,wed,thu,fri -> mon-fri (runs of three or more become ranges)."""
    idx = sorted(DAYS.index(d) for d in days)
    parts: list[str] = []
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{DAYS[idx[i]]}-{DAYS[idx[j]]}")
        else:
            parts.extend(DAYS[k] for k in idx[i : j + 1])
        i = j + 1
    return ",".join(parts)


def schedule_text(schedule: Sequence[dict[str, Any]] | None) -> str:
    """The schedule in the CSV import syntax: `mon-fri 07:00-18:00; sat 10:00-14:00`."""
    if not schedule:
        return "always"
    return "; ".join(f"{_days_text(w['days'])} {w['start']}-{w['end']}" for w in schedule)


def _cameras_in(
    *, session: Session, scope: set[int] | None, include_decommissioned_since: dt.datetime | None
) -> list[Camera]:
    stmt = select(Camera)
    if scope is not None:
        stmt = stmt.where(Camera.organisation_id.in_(scope))
    if include_decommissioned_since is None:
        stmt = stmt.where(Camera.status != CameraStatus.decommissioned)
    else:
        stmt = stmt.where(
            or_(
                Camera.status != CameraStatus.decommissioned,
                Camera.decommissioned_at >= include_decommissioned_since,
            )
        )
    return list(session.scalars(stmt.order_by(Camera.organisation_id, Camera.id)))


def register(
    *,
    session: Session,
    principal: Principal,
    organisation_id: int | None = None,
    export_format: str = "json",
    shared_recipients: SharedRecipients,
) -> RegisterRead:
    """The register (förteckning) of all camera surveillance, with what an Art. 30 record
    needs; decommissioned cameras stay in it for 5 years."""
    principal.require_role(*REPORT_READERS)
    now = utcnow()
    scope = principal.read_scope(organisation_id)
    cameras = _cameras_in(
        session=session,
        scope=scope,
        include_decommissioned_since=_years_before(now, REGISTER_KEEP_YEARS),
    )
    facts = facts_many(session=session, cameras=cameras)
    bases = permit_service.get_bases(
        session=session, basis_ids=(c.legal_basis_id for c in cameras if c.legal_basis_id)
    )
    orgs = {
        i: accounts.get_organisation_or_raise(session=session, organisation_id=i)
        for i in {c.organisation_id for c in cameras}
    }
    site_ids = {c.site_id for c in cameras if c.site_id}
    sites = (
        {s.id: s for s in session.scalars(select(Site).where(Site.id.in_(site_ids)))}
        if site_ids
        else {}
    )
    # Issue 14: recipients from the sharing agreements in force, not a fixed text.
    shared = shared_recipients(session=session, camera_ids=[c.id for c in cameras], at=now)
    entries: list[RegisterEntry] = []
    for camera, fact in zip(cameras, facts, strict=True):
        basis = bases.get(camera.legal_basis_id) if camera.legal_basis_id else None
        org = orgs[camera.organisation_id]
        pol = policy_for(fact, now)
        live_only = camera.mode is CameraMode.live
        reference = None
        decided = None
        if basis is not None:
            reference = basis.case_number or basis.decided_by
            decided = basis.decision_date or (basis.decided_at.date() if basis.decided_at else None)
        entries.append(
            RegisterEntry(
                camera_id=camera.id,
                camera_name=camera.name,
                status=camera.status,
                registered_at=camera.created_at,
                decommissioned_at=camera.decommissioned_at,
                keep_until=(
                    _years_after(camera.decommissioned_at.date(), REGISTER_KEEP_YEARS)
                    if camera.decommissioned_at
                    else None
                ),
                organisation_id=org.id,
                controller=org.name,
                controller_org_number=org.org_number,
                contact_name=camera.owner_contact_name,
                contact_email=camera.owner_contact_email,
                contact_phone=camera.owner_contact_phone,
                site=sites[camera.site_id].name if camera.site_id in sites else None,
                address=camera.address,
                lat=camera.lat,
                lon=camera.lon,
                mount_height_m=camera.mount_height_m,
                direction_deg=camera.direction_deg,
                purpose=camera.purpose,
                purpose_category=camera.purpose_category,
                data_subject_categories=_SUBJECTS.get(camera.purpose_category, _SUBJECTS["other"]),
                personal_data_categories=(
                    "live video images of people and vehicles (not stored)"
                    if live_only
                    else "video images of people and vehicles, recorded"
                ),
                recipients=_recipients(live_only, shared.get(camera.id, [])),
                third_country_transfers="none",
                mode=camera.mode,
                active_hours=schedule_text(camera.schedule),
                retention_hours=pol.max_retention_hours,
                requested_retention_hours=camera.retention_hours,
                retention_justification=basis.retention_justification if basis else None,
                masking_required=pol.masking_required,
                mask_plan_hash=camera.mask_plan_hash,
                signage_posted=camera.signage_posted,
                signage_text=camera.signage_text,
                security_measures=_SECURITY,
                legal_basis_id=camera.legal_basis_id,
                legal_basis_kind=basis.kind.value if basis else None,
                legal_basis_title=basis.title if basis else None,
                legal_basis_status=basis.status.value if basis else None,
                legal_basis_reference=reference,
                legal_basis_decided=decided,
                legal_basis_valid_until=basis.valid_until if basis else None,
                legal_basis_review_by=basis.review_by if basis else None,
                permit_status=PermitStatus(permit_status(fact, now)),
            )
        )
    org_ids = sorted(scope) if scope is not None else sorted(orgs)
    report = RegisterRead(generated_at=now, organisation_ids=org_ids, entries=entries)
    _record_export(session=session, principal=principal, report=report, fmt=export_format)
    return report


def register_csv(report: RegisterRead) -> str:
    """The register as CSV, one camera per row, columns as in RegisterEntry."""
    columns = list(RegisterEntry.model_fields)
    return to_csv(
        columns,
        ([row[c] for c in columns] for row in (e.model_dump(mode="json") for e in report.entries)),
    )


def _record_export(
    *, session: Session, principal: Principal, report: RegisterRead, fmt: str
) -> None:
    for org_id in report.organisation_ids or [principal.organisation_id]:
        audit.record(
            session,
            action="register.export",
            actor=principal,
            organisation_id=org_id,
            target_type="register",
            target_id=org_id,
            details={
                "format": fmt,
                "entries": sum(1 for e in report.entries if e.organisation_id == org_id),
            },
        )


def _has_mask(camera: Camera) -> bool:
    if camera.mask_plan is None:
        return False
    try:
        return not parse_plan(camera.mask_plan).is_noop
    except PlanError:
        return False


def compliance_report(
    *, session: Session, principal: Principal, organisation_id: int | None = None
) -> ComplianceReport:
    """Cameras in service whose basis is missing, not in force, expiring or exceeded, that keep
    footage beyond 72 h without justification, lack signs, or lack a mask plan the basis
    requires."""
    principal.require_role(*REPORT_READERS)
    now = utcnow()
    scope = principal.read_scope(organisation_id)
    cameras = _cameras_in(session=session, scope=scope, include_decommissioned_since=None)
    facts = facts_many(session=session, cameras=cameras)
    items: list[ComplianceItem] = []
    for camera, fact in zip(cameras, facts, strict=True):
        items.extend(
            ComplianceItem(
                camera_id=camera.id,
                camera_name=camera.name,
                organisation_id=camera.organisation_id,
                code=code,
                msg=msg,
                field=field,
            )
            for code, msg, field in camera_issues(fact, camera, now)
        )
    through = [c for c in cameras if c.recording_path == RecordingPath.passthrough]
    states = passthrough.states_of(session=session, camera_ids=(c.id for c in through))
    listed = []
    for camera in through:
        state = states.get(camera.id)
        listed.append(
            PassthroughCamera(
                camera_id=camera.id,
                camera_name=camera.name,
                organisation_id=camera.organisation_id,
                verification=passthrough.to_read(state),
            )
        )
        if state is not None and state.status in (
            PassthroughStatus.failed,
            PassthroughStatus.unsupported,
        ):
            items.append(
                ComplianceItem(
                    camera_id=camera.id,
                    camera_name=camera.name,
                    organisation_id=camera.organisation_id,
                    code=f"passthrough_{state.status.value}",
                    msg=f"passthrough stopped at {iso_seconds(state.failed_at or state.updated_at)}"
                    f" ({state.reason}): the camera records through transcoding or is blocked; "
                    "footage no check covered is quarantined",
                    field="recording_path",
                )
            )
    counts = Counter(i.code for i in items)
    org_ids = sorted(scope) if scope is not None else sorted({c.organisation_id for c in cameras})
    return ComplianceReport(
        generated_at=now,
        organisation_ids=org_ids,
        cameras_checked=len(cameras),
        counts=dict(sorted(counts.items())),
        items=items,
        passthrough=listed,
    )


def camera_issues(
    fact: CameraFacts, camera: Camera, now: dt.datetime
) -> list[tuple[str, str, str]]:
    """(code, message, field) for everything a DPO should look at on one camera in service."""
    out: list[tuple[str, str, str]] = []

    def add(code: str, msg: str, field: str) -> None:
        out.append((code, msg, field))

    basis = fact.basis
    status = permit_status(fact, now)
    if basis is None:
        add(
            "basis_missing",
            "no legal basis is linked: nothing may be viewed or recorded",
            "legal_basis_id",
        )
    elif status == "draft":
        add(
            "basis_draft",
            f"legal basis {basis.id} is not in force (draft or not yet valid): "
            "nothing may be viewed or recorded",
            "legal_basis_id",
        )
    elif status == "expired":
        add(
            "basis_expired",
            f"legal basis {basis.id} has expired: nothing may be viewed or recorded",
            "legal_basis_id",
        )
    elif status == "revoked":
        add(
            "basis_revoked",
            f"legal basis {basis.id} is revoked: nothing may be viewed or recorded",
            "legal_basis_id",
        )
    elif status == "expiring" or (status == "conflict" and _expiring_by(basis, now)):
        add(
            "basis_expiring",
            f"legal basis {basis.id} must be renewed or reviewed by {_expiring_by(basis, now)}",
            "legal_basis_id",
        )
    if basis is not None:
        records = fact.mode in ("recording", "live_and_recording")
        if records and not basis.recording_allowed:
            add(
                "live_only_recording",
                f"mode {fact.mode} records, but legal basis {basis.id} allows no recording",
                "mode",
            )
        if fact.mode in ("live", "live_and_recording") and not basis.live_view_allowed:
            add(
                "live_view_not_allowed",
                f"mode {fact.mode} shows live view, but legal basis {basis.id} does not allow it",
                "mode",
            )
        if records and fact.retention_hours > basis.max_retention_hours:
            add(
                "retention_exceeds_basis",
                f"retention_hours {fact.retention_hours} exceeds the "
                f"{basis.max_retention_hours} hours allowed by legal basis {basis.id}",
                "retention_hours",
            )
    kept = policy_for(fact, now).max_retention_hours
    justified = bool(basis is not None and (basis.retention_justification or "").strip())
    if kept > JUSTIFICATION_THRESHOLD_HOURS and not justified:
        add(
            "retention_unjustified",
            f"keeps footage {kept} hours, more than "
            f"{JUSTIFICATION_THRESHOLD_HOURS}, without a documented retention justification",
            "retention_hours",
        )
    if camera.retention_kept_hours is not None and camera.retention_kept_before is not None:
        add(
            "retention_shortened",
            f"retention was shortened on {camera.retention_kept_before:%Y-%m-%d}: footage "
            f"recorded before then is kept {camera.retention_kept_hours} h (not "
            f"{kept} h) until a DPO or admin confirms the purge",
            "retention_hours",
        )
    if not camera.signage_posted:
        add("no_signage", "no signs about the camera surveillance are posted", "signage")
    if (basis is None or basis.masking_required) and not _has_mask(camera):
        add("no_mask_plan", "masking is required but the camera has no mask plan", "mask_plan")
    return out


def _expiring_by(basis: BasisFacts, now: dt.datetime) -> dt.date | None:
    """The earliest review/valid-until date within the warning window, if any."""
    soon = (now + EXPIRING_WITHIN).date()
    dates = [
        d
        for d in (basis.valid_until.date() if basis.valid_until else None, basis.review_by)
        if d is not None and d <= soon
    ]
    return min(dates) if dates else None


def geojson(
    *, session: Session, principal: Principal, organisation_id: int | None = None
) -> GeoFeatureCollection:
    """Cameras in service with a location, for a public transparency map: purpose, owner,
    mode and retention, never stream details or contact persons."""
    scope: set[int] | None
    if principal.role is Role.police:
        # Police search the registry across organisations (the map shows nothing secret).
        scope = {organisation_id} if organisation_id is not None else None
    else:
        scope = principal.read_scope(organisation_id)
    cameras = [
        c
        for c in _cameras_in(session=session, scope=scope, include_decommissioned_since=None)
        if c.lat is not None and c.lon is not None
    ]
    facts = facts_many(session=session, cameras=cameras)
    names = {
        i: accounts.get_organisation_or_raise(session=session, organisation_id=i).name
        for i in {c.organisation_id for c in cameras}
    }
    now = utcnow()
    features = []
    for camera, fact in zip(cameras, facts, strict=True):
        features.append(
            GeoFeature(
                geometry=GeoPoint(coordinates=(camera.lon or 0.0, camera.lat or 0.0)),
                properties=GeoProperties(
                    id=camera.id,
                    name=camera.name,
                    owner=names[camera.organisation_id],
                    organisation_id=camera.organisation_id,
                    purpose=camera.purpose,
                    purpose_category=camera.purpose_category,
                    mode=camera.mode,
                    retention_hours=policy_for(fact, now).max_retention_hours,
                    address=camera.address,
                    direction_deg=camera.direction_deg,
                    signage_posted=camera.signage_posted,
                ),
            )
        )
    return GeoFeatureCollection(features=features)
