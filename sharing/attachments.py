"""The signed agreement attached to an agreement: upload a PDF (the owner's side) and read it
back checked against its SHA-256 (either side's readers), both audited. The file store itself
is `vms.core.documents`."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.orm import Session

from sharing.agreements import readable, writable
from sharing.models import AgreementStatus, SharingAgreementDocument
from sharing.roles import DOCUMENT_WRITERS, OWNER_READERS, RECIPIENT_DOCUMENT_READERS
from vms.core import audit, documents
from vms.core.auth import Principal
from vms.core.errors import Conflict, NotFound

logger = logging.getLogger(__name__)


def add_document(
    *,
    session: Session,
    actor: Principal,
    agreement_id: int,
    filename: str | None,
    content: bytes,
    documents_dir: Path,
) -> SharingAgreementDocument:
    """Attach the agreement as a PDF, stored by its SHA-256 (drafts and agreements in force)."""
    agreement = writable(
        session=session, principal=actor, agreement_id=agreement_id, roles=DOCUMENT_WRITERS
    )
    if agreement.status not in (AgreementStatus.draft, AgreementStatus.in_force):
        raise Conflict(
            f"sharing agreement {agreement.id} is {agreement.status.value}: its documents are "
            "kept as they are",
            field="status",
        )
    stored = documents.store_upload(content, filename, documents_dir, "agreement.pdf")
    doc = SharingAgreementDocument(agreement_id=agreement.id, uploaded_by=actor.user_id, **stored)
    session.add(doc)
    session.flush()
    audit.record(
        session,
        action="sharing.agreement.document.upload",
        actor=actor,
        organisation_id=agreement.owner_organisation_id,
        target_type="sharing_agreement",
        target_id=agreement.id,
        details=documents.upload_details(doc),
    )
    return doc


def read_document(
    *,
    session: Session,
    principal: Principal,
    agreement_id: int,
    document_id: int,
    documents_dir: Path,
) -> tuple[SharingAgreementDocument, bytes]:
    """The document and its bytes, checked against the stored SHA-256 (audited)."""
    agreement = readable(
        session=session,
        principal=principal,
        agreement_id=agreement_id,
        owner_roles=OWNER_READERS,
        recipient_roles=RECIPIENT_DOCUMENT_READERS,
    )
    doc = session.get(SharingAgreementDocument, document_id)
    if doc is None or doc.agreement_id != agreement.id:
        raise NotFound("document not found", field="document_id")
    try:
        content = documents.load_pdf(documents_dir, doc.storage_path, doc.sha256, doc.id)
    except Conflict:
        logger.error("document %s of sharing agreement %s fails its check", doc.id, agreement.id)
        raise
    audit.record(
        session,
        action="sharing.agreement.document.download",
        actor=principal,
        organisation_id=agreement.owner_organisation_id,
        target_type="sharing_agreement",
        target_id=agreement.id,
        details={"document_id": doc.id, "sha256": doc.sha256},
    )
    return doc, content
