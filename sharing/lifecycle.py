"""Changing agreements: create and edit a draft, put it in force once it is complete, end or
revoke it; each change checked (dates, contacts, the owner's cameras and the scope) and
audited."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import service as registry_service
from registry import sites as registry_sites
from sharing.agreements import CONTACT_FIELDS, cameras_of, documents_of, writable
from sharing.models import AgreementStatus, ShareScope, SharingAgreement, SharingAgreementCamera
from sharing.roles import ACTIVATE_ROLES, CREATE_ROLES, END_ROLES
from sharing.schemas import AgreementCreate
from vms.core import accounts, audit
from vms.core.auth import Principal
from vms.core.db import utcnow
from vms.core.errors import Conflict, ErrorItem, InvalidInput, NotFound

TRANSITIONS: dict[AgreementStatus, frozenset[AgreementStatus]] = {
    AgreementStatus.draft: frozenset({AgreementStatus.in_force, AgreementStatus.revoked}),
    AgreementStatus.in_force: frozenset({AgreementStatus.expired, AgreementStatus.revoked}),
    AgreementStatus.expired: frozenset(),
    AgreementStatus.revoked: frozenset(),
}


def _contact_values(side: str, contact: Any) -> dict[str, Any]:
    """A contact (the request model, its dict from a PATCH, or None) as the three columns."""
    data = contact.model_dump() if hasattr(contact, "model_dump") else dict(contact or {})
    return {f"{side}_contact_{f}": data.get(f) for f in CONTACT_FIELDS}


def _check_cameras(
    *,
    session: Session,
    owner_organisation_id: int,
    camera_ids: Iterable[int],
    site_id: int | None,
    scope: ShareScope,
) -> list[ErrorItem]:
    """Only the owner's cameras, each offering something the scope shares."""
    errors: list[ErrorItem] = []
    for camera_id in sorted(set(camera_ids)):
        camera = registry_service.get_camera(session=session, camera_id=camera_id)
        if camera is None or camera.organisation_id != owner_organisation_id:
            errors.append(
                ErrorItem(
                    "not_found", f"camera {camera_id} is not a camera of the owner", "camera_ids"
                )
            )
        elif camera.status.value == "decommissioned":
            errors.append(
                ErrorItem("invalid", f"camera {camera_id} is decommissioned", "camera_ids")
            )
        elif scope is ShareScope.live_and_recordings and camera.mode.value == "live":
            errors.append(
                ErrorItem(
                    "live_only",
                    f"camera {camera_id} is live-only: it has no recordings to share "
                    "(use scope 'live')",
                    "camera_ids",
                )
            )
        elif scope is ShareScope.live and camera.mode.value == "recording":
            errors.append(
                ErrorItem(
                    "no_live_view",
                    f"camera {camera_id} records only: it has no live view to share",
                    "camera_ids",
                )
            )
    if site_id is not None:
        try:
            site = registry_sites.get_site_or_raise(session=session, site_id=site_id)
        except NotFound:
            site = None
        if site is None or site.organisation_id != owner_organisation_id:
            errors.append(ErrorItem("not_found", "not a site of the owner", "site_id"))
    return errors


def _check(values: dict[str, Any], *, for_force: bool, has_document: bool) -> list[ErrorItem]:
    errors: list[ErrorItem] = []
    start, end = values.get("valid_from"), values.get("valid_until")
    if start is not None and end is not None and end <= start:
        errors.append(ErrorItem("invalid", "must be after valid_from", "valid_until"))
    if values.get("owner_organisation_id") == values.get("recipient_organisation_id"):
        errors.append(
            ErrorItem(
                "invalid",
                "an organisation does not share with itself",
                "recipient_organisation_id",
            )
        )
    if not for_force:
        return errors
    if end is None:
        errors.append(
            ErrorItem("required", "an agreement in force needs an end date", "valid_until")
        )
    if not values.get("camera_ids") and values.get("site_id") is None:
        errors.append(
            ErrorItem("required", "name the cameras (or a site) that are shared", "camera_ids")
        )
    for side in ("owner", "recipient"):
        if not values.get(f"{side}_contact_name") or not (
            values.get(f"{side}_contact_email") or values.get(f"{side}_contact_phone")
        ):
            errors.append(
                ErrorItem(
                    "required",
                    "a contact with a name and an e-mail address or phone number",
                    f"{side}_contact",
                )
            )
    if not has_document:
        errors.append(ErrorItem("required", "attach the signed agreement (PDF) first", "documents"))
    return errors


def create_agreement(
    *, session: Session, actor: Principal, data: AgreementCreate
) -> SharingAgreement:
    """A draft agreement of the owner (the actor's organisation unless admin names one)."""
    actor.require_role(*CREATE_ROLES)
    owner_id = (
        data.owner_organisation_id
        if data.owner_organisation_id is not None
        else actor.organisation_id
    )
    actor.require_write(owner_id, "organisation")
    accounts.get_organisation_or_raise(session=session, organisation_id=owner_id)
    values: dict[str, Any] = {
        "owner_organisation_id": owner_id,
        "recipient_organisation_id": data.recipient_organisation_id,
        "title": data.title,
        "purpose": data.purpose,
        "legal_ground": data.legal_ground,
        "scope": data.scope,
        "site_id": data.site_id,
        "valid_from": data.valid_from,
        "valid_until": data.valid_until,
        **_contact_values("owner", data.owner_contact),
        **_contact_values("recipient", data.recipient_contact),
    }
    errors = _check(values, for_force=False, has_document=False)
    errors += _check_recipient(session, data.recipient_organisation_id)
    errors += _check_cameras(
        session=session,
        owner_organisation_id=owner_id,
        camera_ids=data.camera_ids,
        site_id=data.site_id,
        scope=data.scope,
    )
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    agreement = SharingAgreement(**values, status=AgreementStatus.draft, created_by=actor.user_id)
    session.add(agreement)
    session.flush()
    _set_cameras(session, agreement.id, data.camera_ids)
    audit.record(
        session,
        action="sharing.agreement.create",
        actor=actor,
        organisation_id=owner_id,
        target_type="sharing_agreement",
        target_id=agreement.id,
        details=_summary(agreement, sorted(set(data.camera_ids))),
    )
    return agreement


def _check_recipient(session: Session, organisation_id: int) -> list[ErrorItem]:
    try:
        accounts.get_organisation_or_raise(session=session, organisation_id=organisation_id)
    except NotFound:
        return [ErrorItem("not_found", "no such organisation", "recipient_organisation_id")]
    return []


def _set_cameras(session: Session, agreement_id: int, camera_ids: Iterable[int]) -> None:
    for row in session.scalars(
        select(SharingAgreementCamera).where(SharingAgreementCamera.agreement_id == agreement_id)
    ):
        session.delete(row)
    session.flush()
    for camera_id in sorted(set(camera_ids)):
        session.add(SharingAgreementCamera(agreement_id=agreement_id, camera_id=camera_id))
    session.flush()


def _summary(agreement: SharingAgreement, camera_ids: list[int]) -> dict[str, Any]:
    return {
        "recipient_organisation_id": agreement.recipient_organisation_id,
        "scope": agreement.scope.value,
        "camera_ids": camera_ids,
        "site_id": agreement.site_id,
        "valid_from": agreement.valid_from.isoformat(),
        "valid_until": agreement.valid_until.isoformat() if agreement.valid_until else None,
        "status": agreement.status.value,
    }


def update_agreement(
    *, session: Session, actor: Principal, agreement_id: int, changes: dict[str, Any]
) -> SharingAgreement:
    """Change a draft (an agreement in force is frozen: end it and make a new one)."""
    agreement = writable(
        session=session, principal=actor, agreement_id=agreement_id, roles=CREATE_ROLES
    )
    if agreement.status is not AgreementStatus.draft:
        raise Conflict(
            f"sharing agreement {agreement.id} is {agreement.status.value}: only drafts change "
            "(end it and create a new one)",
            field="status",
        )
    not_null = ("recipient_organisation_id", "title", "purpose", "legal_ground", "scope")
    nulls = [ErrorItem("invalid", "must not be null", n) for n in not_null if n in changes
             and changes[n] is None]  # fmt: skip
    if "valid_from" in changes and changes["valid_from"] is None:
        nulls.append(ErrorItem("invalid", "must not be null", "valid_from"))
    if nulls:
        raise InvalidInput(nulls[0].msg, items=nulls)
    camera_ids = changes.pop("camera_ids", None)
    values = {k: v for k, v in changes.items() if k not in ("owner_contact", "recipient_contact")}
    for side in ("owner", "recipient"):
        key = f"{side}_contact"
        if key in changes:
            values |= _contact_values(side, changes[key])
    merged = {c.key: getattr(agreement, c.key) for c in SharingAgreement.__table__.columns}
    merged |= values
    new_cameras = camera_ids if camera_ids is not None else cameras_of(session, agreement.id)
    errors = _check(merged, for_force=False, has_document=False)
    if "recipient_organisation_id" in values:
        errors += _check_recipient(session, values["recipient_organisation_id"])
    errors += _check_cameras(
        session=session,
        owner_organisation_id=agreement.owner_organisation_id,
        camera_ids=new_cameras,
        site_id=merged["site_id"],
        scope=ShareScope(merged["scope"]),
    )
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    changed = sorted(k for k, v in values.items() if getattr(agreement, k) != v)
    for key, value in values.items():
        setattr(agreement, key, value)
    if camera_ids is not None:
        if sorted(set(camera_ids)) != cameras_of(session, agreement.id):
            changed.append("camera_ids")
        _set_cameras(session, agreement.id, camera_ids)
    session.flush()
    if changed:
        audit.record(
            session,
            action="sharing.agreement.update",
            actor=actor,
            organisation_id=agreement.owner_organisation_id,
            target_type="sharing_agreement",
            target_id=agreement.id,
            details={"fields": changed, **_summary(agreement, cameras_of(session, agreement.id))},
        )
    return agreement


def change_status(
    *,
    session: Session,
    actor: Principal,
    agreement_id: int,
    status: AgreementStatus,
    reason: str | None = None,
) -> SharingAgreement:
    """draft -> in_force (the owner's DPO or admin, once complete) -> expired | revoked (also
    the owner's facility manager); a draft may be withdrawn (revoked). Open sessions under an
    agreement that leaves force end at their next re-check."""
    roles = ACTIVATE_ROLES if status is AgreementStatus.in_force else END_ROLES
    agreement = writable(session=session, principal=actor, agreement_id=agreement_id, roles=roles)
    old = agreement.status
    if status not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "none"
        raise Conflict(
            f"sharing agreement {agreement.id} cannot change from {old.value} to "
            f"{status.value} (allowed from {old.value}: {allowed})",
            field="status",
        )
    reason = (reason or "").strip() or None
    if status is AgreementStatus.revoked and reason is None:
        raise InvalidInput("a reason is required when revoking an agreement", field="reason")
    now = utcnow()
    if status is AgreementStatus.in_force:
        merged = {c.key: getattr(agreement, c.key) for c in SharingAgreement.__table__.columns}
        merged["camera_ids"] = cameras_of(session, agreement.id)
        errors = _check(
            merged, for_force=True, has_document=bool(documents_of(session, agreement.id))
        )
        if agreement.valid_until is not None and agreement.valid_until <= now:
            errors.append(ErrorItem("invalid", "lies in the past", "valid_until"))
        errors += _check_cameras(
            session=session,
            owner_organisation_id=agreement.owner_organisation_id,
            camera_ids=merged["camera_ids"],
            site_id=agreement.site_id,
            scope=agreement.scope,
        )
        if errors:
            raise InvalidInput(errors[0].msg, items=errors)
        agreement.in_force_at = now
        agreement.in_force_by = actor.user_id
    else:
        agreement.ended_at = now
        agreement.ended_by = actor.user_id
        agreement.end_reason = reason
    agreement.status = status
    session.flush()
    audit.record(
        session,
        action="sharing.agreement.status",
        actor=actor,
        organisation_id=agreement.owner_organisation_id,
        target_type="sharing_agreement",
        target_id=agreement.id,
        details={
            "from": old.value,
            "to": status.value,
            "reason": reason,
            "recipient_organisation_id": agreement.recipient_organisation_id,
        },
    )
    return agreement
