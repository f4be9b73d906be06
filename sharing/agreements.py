"""Reading agreements: the status an agreement has at a moment (`effective`), which cameras it
covers, who may read or change it (`readable`/`writable`, shared with the modules that change
it), one agreement as the API shows it, and the list a principal may read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, or_, select, true
from sqlalchemy.orm import Session

from registry import service as registry_service
from sharing.models import (
    AgreementStatus,
    SharingAgreement,
    SharingAgreementCamera,
    SharingAgreementDocument,
)
from sharing.roles import OWNER_READERS, RECIPIENT_READERS
from sharing.schemas import AgreementRead, ContactRead, DocumentRead, Effective
from vms.core import accounts
from vms.core.auth import Principal
from vms.core.db import count_rows, utcnow
from vms.core.errors import NotFound
from vms.core.models import Role
from vms.core.pagination import PageParams

if TYPE_CHECKING:
    from registry.models import Camera


CONTACT_FIELDS = ("name", "email", "phone")


# --- the life cycle, pure ------------------------------------------------------------------


def effective(agreement: SharingAgreement, at: dt.datetime) -> Effective:
    """The status with the validity window applied: an agreement in force before its
    `valid_from` is `scheduled`, after its `valid_until` `expired`."""
    status = agreement.status
    if status is AgreementStatus.draft:
        return "draft"
    if status is AgreementStatus.revoked:
        return "revoked"
    if status is AgreementStatus.expired:
        return "expired"
    if at < agreement.valid_from:
        return "scheduled"
    if agreement.valid_until is not None and at >= agreement.valid_until:
        return "expired"
    return "active"


def in_force_at(agreement: SharingAgreement, at: dt.datetime) -> bool:
    return effective(agreement, at) == "active"


def in_force_clause(at: dt.datetime) -> Any:
    return and_(
        SharingAgreement.status == AgreementStatus.in_force,
        SharingAgreement.valid_from <= at,
        or_(SharingAgreement.valid_until.is_(None), SharingAgreement.valid_until > at),
    )


# --- reading -------------------------------------------------------------------------------


def cameras_of(session: Session, agreement_id: int) -> list[int]:
    return list(
        session.scalars(
            select(SharingAgreementCamera.camera_id)
            .where(SharingAgreementCamera.agreement_id == agreement_id)
            .order_by(SharingAgreementCamera.camera_id)
        )
    )


def documents_of(session: Session, agreement_id: int) -> list[SharingAgreementDocument]:
    return list(
        session.scalars(
            select(SharingAgreementDocument)
            .where(SharingAgreementDocument.agreement_id == agreement_id)
            .order_by(SharingAgreementDocument.id)
        )
    )


def _contact(agreement: SharingAgreement, side: str) -> ContactRead:
    return ContactRead(
        **{f: getattr(agreement, f"{side}_contact_{f}") for f in CONTACT_FIELDS},
    )


def agreement_read(
    *, session: Session, agreement: SharingAgreement, at: dt.datetime | None = None
) -> AgreementRead:
    at = at or utcnow()
    names = {
        i: accounts.get_organisation_or_raise(session=session, organisation_id=i).name
        for i in {agreement.owner_organisation_id, agreement.recipient_organisation_id}
    }
    state = effective(agreement, at)
    return AgreementRead(
        id=agreement.id,
        owner_organisation_id=agreement.owner_organisation_id,
        owner=names[agreement.owner_organisation_id],
        recipient_organisation_id=agreement.recipient_organisation_id,
        recipient=names[agreement.recipient_organisation_id],
        title=agreement.title,
        purpose=agreement.purpose,
        legal_ground=agreement.legal_ground,
        scope=agreement.scope,
        camera_ids=cameras_of(session, agreement.id),
        site_id=agreement.site_id,
        valid_from=agreement.valid_from,
        valid_until=agreement.valid_until,
        owner_contact=_contact(agreement, "owner"),
        recipient_contact=_contact(agreement, "recipient"),
        status=agreement.status,
        effective=state,
        in_force_now=state == "active",
        created_by=agreement.created_by,
        in_force_at=agreement.in_force_at,
        in_force_by=agreement.in_force_by,
        ended_at=agreement.ended_at,
        ended_by=agreement.ended_by,
        end_reason=agreement.end_reason,
        created_at=agreement.created_at,
        updated_at=agreement.updated_at,
        documents=[DocumentRead.model_validate(d) for d in documents_of(session, agreement.id)],
    )


def _owner_side(principal: Principal, agreement: SharingAgreement) -> bool:
    return principal.can_read_org(agreement.owner_organisation_id)


def _recipient_side(principal: Principal, agreement: SharingAgreement) -> bool:
    # A draft is the owner's business until it is in force.
    return (
        principal.organisation_id == agreement.recipient_organisation_id
        and agreement.status is not AgreementStatus.draft
    )


def readable(
    *,
    session: Session,
    principal: Principal,
    agreement_id: int,
    owner_roles: Sequence[Role],
    recipient_roles: Sequence[Role],
) -> SharingAgreement:
    """The agreement if the principal is on one of its sides with a role that may do this there
    (403 otherwise); 404 for everyone else."""
    agreement = session.get(SharingAgreement, agreement_id)
    if agreement is None:
        raise NotFound("sharing agreement not found", field="agreement_id")
    if _owner_side(principal, agreement):
        principal.require_role(*owner_roles)
    elif _recipient_side(principal, agreement):
        principal.require_role(*recipient_roles)
    else:
        raise NotFound("sharing agreement not found", field="agreement_id")
    return agreement


def writable(
    *, session: Session, principal: Principal, agreement_id: int, roles: Sequence[Role]
) -> SharingAgreement:
    """The agreement for a change by the owner's side: role (403), owner organisation readable
    (404), and facility managers only in their own organisation (403)."""
    principal.require_role(*roles)
    agreement = session.get(SharingAgreement, agreement_id)
    if agreement is None or not _owner_side(principal, agreement):
        raise NotFound("sharing agreement not found", field="agreement_id")
    if principal.role is Role.facility_manager:
        principal.require_write(agreement.owner_organisation_id, "sharing agreement")
    return agreement


def read_agreement(*, session: Session, principal: Principal, agreement_id: int) -> AgreementRead:
    """One agreement, for its owner's side or (once in force) its recipient."""
    agreement = readable(
        session=session,
        principal=principal,
        agreement_id=agreement_id,
        owner_roles=OWNER_READERS,
        recipient_roles=RECIPIENT_READERS,
    )
    return agreement_read(session=session, agreement=agreement)


def list_agreements(
    *,
    session: Session,
    principal: Principal,
    page: PageParams,
    side: str | None = None,
    organisation_id: int | None = None,
    status: AgreementStatus | None = None,
    camera_id: int | None = None,
    in_force_now: bool | None = None,
) -> tuple[list[SharingAgreement], int]:
    """Agreements the principal can read: those of the organisations it reads on the owner's
    side (owner-side roles), and those its organisation receives (not drafts)."""
    clauses: list[Any] = []
    if side in (None, "owner") and principal.role in OWNER_READERS:
        scope = principal.readable_org_ids()
        clauses.append(
            SharingAgreement.owner_organisation_id.in_(scope) if scope is not None else true()
        )
    if side in (None, "recipient"):
        recipient: Any = SharingAgreement.status != AgreementStatus.draft
        if not principal.is_admin:
            recipient = and_(
                recipient, SharingAgreement.recipient_organisation_id == principal.organisation_id
            )
        clauses.append(recipient)
    if not clauses:
        return [], 0
    stmt = select(SharingAgreement).where(or_(*clauses))
    if organisation_id is not None:
        stmt = stmt.where(
            or_(
                SharingAgreement.owner_organisation_id == organisation_id,
                SharingAgreement.recipient_organisation_id == organisation_id,
            )
        )
    if status is not None:
        stmt = stmt.where(SharingAgreement.status == status)
    if in_force_now is not None:
        clause = in_force_clause(utcnow())
        stmt = stmt.where(clause if in_force_now else ~clause)
    if camera_id is not None:
        camera = registry_service.get_camera(session=session, camera_id=camera_id)
        if camera is None:
            return [], 0
        stmt = stmt.where(covers(camera))
    total = count_rows(session, stmt)
    rows = session.scalars(stmt.order_by(SharingAgreement.id).limit(page.limit).offset(page.offset))
    return list(rows), total


def covers(camera: Camera) -> Any:
    """SQL: the agreement covers `camera` (listed, or its site is the agreement's group)."""
    listed = exists().where(
        SharingAgreementCamera.agreement_id == SharingAgreement.id,
        SharingAgreementCamera.camera_id == camera.id,
    )
    clause: Any = listed
    if camera.site_id is not None:
        clause = or_(listed, SharingAgreement.site_id == camera.site_id)
    return and_(SharingAgreement.owner_organisation_id == camera.organisation_id, clause)
