"""Legal-basis services: interest assessments, IMY permits, "not required" records, their
status life cycle and their attached PDF documents (stored by `vms.core.documents`)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from permits.models import BasisKind, BasisStatus, LegalBasis, LegalBasisDocument
from permits.policy import JUSTIFICATION_THRESHOLD_HOURS, BasisFacts, basis_in_force
from permits.schemas import DocumentRead, LegalBasisCreate, LegalBasisRead
from vms.core import accounts, audit, documents
from vms.core.auth import Principal
from vms.core.db import count_rows, utcnow
from vms.core.errors import Conflict, ErrorItem, Forbidden, InvalidInput, NotFound
from vms.core.models import Role
from vms.core.pagination import PageParams

logger = logging.getLogger(__name__)

# Operators and police never need the legal documentation itself; policy_for applies it.
BASIS_ROLES = (Role.admin, Role.facility_manager, Role.dpo)

# Fields that only mean something for one kind of basis.
PERMIT_ONLY = (
    "authority",
    "case_number",
    "decision_date",
    "valid_from",
    "valid_until",
    "conditions",
)
NOT_REQUIRED_ONLY = ("not_required_reason",)
# What must be filled in before a basis of each kind can be in force.
REQUIRED_IN_FORCE: dict[BasisKind, tuple[str, ...]] = {
    BasisKind.assessment: (
        "purpose",
        "less_intrusive_measures",
        "covered_area",
        "decided_by",
        "decided_at",
    ),
    BasisKind.permit: ("authority", "case_number", "decision_date"),
    BasisKind.not_required: ("not_required_reason",),
}
NOT_NULL = (
    "title",
    "max_retention_hours",
    "live_view_allowed",
    "recording_allowed",
    "masking_required",
)
TRANSITIONS: dict[BasisStatus, frozenset[BasisStatus]] = {
    BasisStatus.draft: frozenset({BasisStatus.in_force, BasisStatus.revoked}),
    BasisStatus.in_force: frozenset({BasisStatus.expired, BasisStatus.revoked}),
    BasisStatus.expired: frozenset(),
    BasisStatus.revoked: frozenset(),
}


# --- facts for the policy ------------------------------------------------------------------


def facts_of(basis: LegalBasis) -> BasisFacts:
    return BasisFacts(
        id=basis.id,
        kind=basis.kind.value,
        status=basis.status.value,
        live_view_allowed=basis.live_view_allowed,
        recording_allowed=basis.recording_allowed,
        max_retention_hours=basis.max_retention_hours,
        masking_required=basis.masking_required,
        valid_from=basis.valid_from,
        valid_until=basis.valid_until,
        review_by=basis.review_by,
        retention_justification=basis.retention_justification,
    )


def basis_facts(*, session: Session, basis_id: int) -> BasisFacts | None:
    basis = session.get(LegalBasis, basis_id)
    return facts_of(basis) if basis is not None else None


def get_bases(*, session: Session, basis_ids: Iterable[int]) -> dict[int, LegalBasis]:
    """Several bases in one query (lists and the register would otherwise query per camera)."""
    ids = sorted(set(basis_ids))
    if not ids:
        return {}
    return {b.id: b for b in session.scalars(select(LegalBasis).where(LegalBasis.id.in_(ids)))}


def list_organisation_bases(*, session: Session, organisation_id: int) -> list[LegalBasis]:
    return list(
        session.scalars(select(LegalBasis).where(LegalBasis.organisation_id == organisation_id))
    )


def basis_facts_many(*, session: Session, basis_ids: Iterable[int]) -> dict[int, BasisFacts]:
    return {i: facts_of(b) for i, b in get_bases(session=session, basis_ids=basis_ids).items()}


def basis_of_organisation(
    *, session: Session, basis_id: int, organisation_id: int
) -> BasisFacts | None:
    """The basis if it exists and belongs to the organisation (a camera may only cite its own
    organisation's bases); None otherwise, without saying which."""
    basis = session.get(LegalBasis, basis_id)
    if basis is None or basis.organisation_id != organisation_id:
        return None
    return facts_of(basis)


# --- reading -------------------------------------------------------------------------------


def get_basis_or_raise(
    *, session: Session, basis_id: int, principal: Principal | None = None
) -> LegalBasis:
    basis = session.get(LegalBasis, basis_id)
    if basis is None or (
        principal is not None and not principal.can_read_org(basis.organisation_id)
    ):
        raise NotFound("legal basis not found", field="basis_id")
    return basis


def list_bases(
    *,
    session: Session,
    principal: Principal,
    page: PageParams,
    organisation_id: int | None = None,
    status: BasisStatus | None = None,
    kind: BasisKind | None = None,
) -> tuple[list[LegalBasis], int]:
    principal.require_role(*BASIS_ROLES)
    stmt = select(LegalBasis)
    scope = principal.read_scope(organisation_id)
    if scope is not None:
        stmt = stmt.where(LegalBasis.organisation_id.in_(scope))
    if status is not None:
        stmt = stmt.where(LegalBasis.status == status)
    if kind is not None:
        stmt = stmt.where(LegalBasis.kind == kind)
    total = count_rows(session, stmt)
    rows = session.scalars(stmt.order_by(LegalBasis.id).limit(page.limit).offset(page.offset))
    return list(rows), total


def list_documents(*, session: Session, basis_id: int) -> list[LegalBasisDocument]:
    return list(
        session.scalars(
            select(LegalBasisDocument)
            .where(LegalBasisDocument.legal_basis_id == basis_id)
            .order_by(LegalBasisDocument.id)
        )
    )


def read_basis(*, session: Session, principal: Principal, basis_id: int) -> LegalBasisRead:
    """One basis with its documents, for a role that may read the documentation."""
    principal.require_role(*BASIS_ROLES)
    basis = get_basis_or_raise(session=session, basis_id=basis_id, principal=principal)
    return basis_read(session=session, basis=basis)


def basis_read(
    *, session: Session, basis: LegalBasis, at: dt.datetime | None = None
) -> LegalBasisRead:
    in_force, _ = basis_in_force(facts_of(basis), at or utcnow())
    docs = [
        DocumentRead.model_validate(d) for d in list_documents(session=session, basis_id=basis.id)
    ]
    out = LegalBasisRead.model_validate(
        {**{c: getattr(basis, c) for c in _COLUMNS}, "in_force_now": in_force, "documents": docs}
    )
    return out


_COLUMNS = [c.key for c in LegalBasis.__table__.columns]


# --- writing -------------------------------------------------------------------------------


def require_basis_write(
    principal: Principal, organisation_id: int, what: str = "legal basis"
) -> None:
    """Facility managers write their own organisation's bases; DPOs document assessments for
    every organisation assigned to them; admin for all."""
    principal.require_role(*BASIS_ROLES)
    if principal.role is Role.dpo:
        principal.require_read(organisation_id, what)
    else:
        principal.require_write(organisation_id, what)


# Separation of duties: a facility manager drafts a basis (and attaches its documents), but
# only the organisation's DPO or an admin decides it: puts it in force, edits it while in force,
# ends it. Otherwise whoever runs the cameras could grant them their own permission.
DECIDERS = (Role.admin, Role.dpo)


def require_basis_decision(principal: Principal, what: str) -> None:
    if principal.role not in DECIDERS:
        raise Forbidden(
            f"{what} is decided by the organisation's DPO or an admin (a facility manager "
            "drafts it)"
        )


def _check(values: dict[str, Any], kind: BasisKind, status: BasisStatus) -> list[ErrorItem]:
    """Cross-field rules on the complete (merged) record."""
    errors: list[ErrorItem] = []
    for name in PERMIT_ONLY:
        if kind is not BasisKind.permit and values.get(name) is not None:
            errors.append(ErrorItem("invalid", "only for kind 'permit'", name))
    for name in NOT_REQUIRED_ONLY:
        if kind is not BasisKind.not_required and values.get(name) is not None:
            errors.append(ErrorItem("invalid", "only for kind 'not_required'", name))
    hours = values.get("max_retention_hours")
    justification = (values.get("retention_justification") or "").strip()
    if isinstance(hours, int) and hours > JUSTIFICATION_THRESHOLD_HOURS and not justification:
        errors.append(
            ErrorItem(
                "justification_required",
                f"required when max_retention_hours is above {JUSTIFICATION_THRESHOLD_HOURS} "
                f"(IMY: longer retention needs a specific justification); got {hours}",
                "retention_justification",
            )
        )
    start, end = values.get("valid_from"), values.get("valid_until")
    if start is not None and end is not None and end <= start:
        errors.append(ErrorItem("invalid", "must be after valid_from", "valid_until"))
    if status is BasisStatus.in_force:
        for name in REQUIRED_IN_FORCE[kind]:
            value = values.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                errors.append(
                    ErrorItem(
                        "required",
                        f"required for a basis of kind '{kind.value}' to be in force",
                        name,
                    )
                )
    return errors


def create_basis(*, session: Session, actor: Principal, data: LegalBasisCreate) -> LegalBasis:
    actor.require_role(*BASIS_ROLES)
    organisation_id = (
        data.organisation_id if data.organisation_id is not None else actor.organisation_id
    )
    require_basis_write(actor, organisation_id, "organisation")
    accounts.get_organisation_or_raise(session=session, organisation_id=organisation_id)
    values = data.model_dump(exclude={"organisation_id", "kind", "status"})
    status = BasisStatus(data.status)
    if status is not BasisStatus.draft:
        require_basis_decision(actor, "putting a legal basis in force")
    errors = _check(values, data.kind, status)
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    basis = LegalBasis(organisation_id=organisation_id, kind=data.kind, status=status, **values)
    session.add(basis)
    session.flush()
    audit.record(
        session,
        action="legal_basis.create",
        actor=actor,
        organisation_id=organisation_id,
        target_type="legal_basis",
        target_id=basis.id,
        details={"kind": data.kind.value, "status": status.value, **_limits(basis)},
    )
    return basis


def update_basis(
    *, session: Session, actor: Principal, basis_id: int, changes: dict[str, Any]
) -> LegalBasis:
    actor.require_role(*BASIS_ROLES)
    basis = get_basis_or_raise(session=session, basis_id=basis_id, principal=actor)
    require_basis_write(actor, basis.organisation_id)
    if basis.status is BasisStatus.in_force:
        require_basis_decision(actor, "changing a legal basis in force")
    if basis.status in (BasisStatus.expired, BasisStatus.revoked):
        raise Conflict(
            f"legal basis {basis.id} is {basis.status.value}: it is kept as documentation and "
            "can no longer be changed (create a new basis instead)",
            field="status",
        )
    errors = [
        ErrorItem("invalid", "must not be null", name)
        for name in NOT_NULL
        if name in changes and changes[name] is None
    ]
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    merged = {c: getattr(basis, c) for c in _COLUMNS} | changes
    errors = _check(merged, basis.kind, basis.status)
    if errors:
        raise InvalidInput(errors[0].msg, items=errors)
    before = _limits(basis)
    changed = sorted(k for k, v in changes.items() if getattr(basis, k) != v)
    for key, value in changes.items():
        setattr(basis, key, value)
    session.flush()
    if changed:
        audit.record(
            session,
            action="legal_basis.update",
            actor=actor,
            organisation_id=basis.organisation_id,
            target_type="legal_basis",
            target_id=basis.id,
            details={"fields": changed, "before": before, "after": _limits(basis)},
        )
    return basis


def change_status(
    *,
    session: Session,
    actor: Principal,
    basis_id: int,
    status: BasisStatus,
    reason: str | None = None,
) -> LegalBasis:
    """Move a basis through draft -> in_force -> expired | revoked (drafts may be revoked)."""
    actor.require_role(*BASIS_ROLES)
    basis = get_basis_or_raise(session=session, basis_id=basis_id, principal=actor)
    require_basis_write(actor, basis.organisation_id)
    old = basis.status
    if status is BasisStatus.in_force or old is BasisStatus.in_force:
        # Withdrawing one's own draft is the drafter's business; the rest is a decision.
        require_basis_decision(actor, f"moving a legal basis from {old.value} to {status.value}")
    if status not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "none"
        raise Conflict(
            f"legal basis {basis.id} cannot change from {old.value} to {status.value} "
            f"(allowed from {old.value}: {allowed})",
            field="status",
        )
    reason = (reason or "").strip() or None
    if status is BasisStatus.revoked and reason is None:
        raise InvalidInput("a reason is required when revoking a legal basis", field="reason")
    if status is BasisStatus.in_force:
        merged = {c: getattr(basis, c) for c in _COLUMNS}
        errors = _check(merged, basis.kind, status)
        if errors:
            raise InvalidInput(errors[0].msg, items=errors)
    now = utcnow()
    basis.status = status
    if status is BasisStatus.revoked:
        basis.revoked_at = now
        basis.revoked_reason = reason
    if status in (BasisStatus.revoked, BasisStatus.expired) and old is BasisStatus.in_force:
        # The 5-year keeping period of the documentation runs from here.
        basis.surveillance_ended_at = basis.surveillance_ended_at or now
    session.flush()
    audit.record(
        session,
        action="legal_basis.status",
        actor=actor,
        organisation_id=basis.organisation_id,
        target_type="legal_basis",
        target_id=basis.id,
        details={"from": old.value, "to": status.value, "reason": reason},
    )
    return basis


def _limits(basis: LegalBasis) -> dict[str, Any]:
    return {
        "max_retention_hours": basis.max_retention_hours,
        "live_view_allowed": basis.live_view_allowed,
        "recording_allowed": basis.recording_allowed,
        "masking_required": basis.masking_required,
    }


# --- documents -----------------------------------------------------------------------------


def add_document(
    *,
    session: Session,
    actor: Principal,
    basis_id: int,
    filename: str | None,
    content: bytes,
    documents_dir: Path,
) -> LegalBasisDocument:
    """Attach a PDF. Stored content-addressed (by SHA-256), so a file is never overwritten."""
    actor.require_role(*BASIS_ROLES)
    basis = get_basis_or_raise(session=session, basis_id=basis_id, principal=actor)
    require_basis_write(actor, basis.organisation_id)
    stored = documents.store_upload(content, filename, documents_dir)
    doc = LegalBasisDocument(legal_basis_id=basis.id, uploaded_by=actor.user_id, **stored)
    session.add(doc)
    session.flush()
    audit.record(
        session,
        action="legal_basis.document.upload",
        actor=actor,
        organisation_id=basis.organisation_id,
        target_type="legal_basis",
        target_id=basis.id,
        details=documents.upload_details(doc),
    )
    return doc


def read_document(
    *,
    session: Session,
    principal: Principal,
    basis_id: int,
    document_id: int,
    documents_dir: Path,
) -> tuple[LegalBasisDocument, bytes]:
    """The document and its bytes, checked against the stored SHA-256."""
    principal.require_role(*BASIS_ROLES)
    basis = get_basis_or_raise(session=session, basis_id=basis_id, principal=principal)
    doc = session.get(LegalBasisDocument, document_id)
    if doc is None or doc.legal_basis_id != basis.id:
        raise NotFound("document not found", field="document_id")
    try:
        content = documents.load_pdf(documents_dir, doc.storage_path, doc.sha256, doc.id)
    except Conflict:
        logger.error("document %s of legal basis %s fails its check", doc.id, basis.id)
        raise
    audit.record(
        session,
        action="legal_basis.document.download",
        actor=principal,
        organisation_id=basis.organisation_id,
        target_type="legal_basis",
        target_id=basis.id,
        details={"document_id": doc.id, "sha256": doc.sha256},
    )
    return doc, content
