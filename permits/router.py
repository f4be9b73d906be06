"""Routes for legal bases (interest assessments, IMY permits, "not required" records)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status

from permits import service
from permits.models import BasisKind, BasisStatus
from permits.schemas import (
    DocumentRead,
    LegalBasisCreate,
    LegalBasisRead,
    LegalBasisUpdate,
    StatusChange,
)
from vms.core import documents
from vms.core.deps import PrincipalDep, SessionDep, SettingsDep
from vms.core.pagination import Page, PageDep

router = APIRouter(prefix="/api/v1", tags=["legal bases"])


@router.post("/legal-bases", response_model=LegalBasisRead, status_code=status.HTTP_201_CREATED)
def create_legal_basis(
    body: LegalBasisCreate, session: SessionDep, principal: PrincipalDep
) -> LegalBasisRead:
    """Document an interest assessment, an IMY permit or why no basis is required."""
    basis = service.create_basis(session=session, actor=principal, data=body)
    return service.basis_read(session=session, basis=basis)


@router.get("/legal-bases", response_model=Page[LegalBasisRead])
def list_legal_bases(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    organisation_id: int | None = None,
    status: BasisStatus | None = None,
    kind: BasisKind | None = None,
) -> Page[LegalBasisRead]:
    """Legal bases of the organisations you can read."""
    rows, total = service.list_bases(
        session=session,
        principal=principal,
        page=page,
        organisation_id=organisation_id,
        status=status,
        kind=kind,
    )
    return Page(
        items=[service.basis_read(session=session, basis=b) for b in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/legal-bases/{basis_id}", response_model=LegalBasisRead)
def get_legal_basis(basis_id: int, session: SessionDep, principal: PrincipalDep) -> LegalBasisRead:
    """One legal basis with its documents."""
    return service.read_basis(session=session, principal=principal, basis_id=basis_id)


@router.patch("/legal-bases/{basis_id}", response_model=LegalBasisRead)
def update_legal_basis(
    basis_id: int, body: LegalBasisUpdate, session: SessionDep, principal: PrincipalDep
) -> LegalBasisRead:
    """Change a draft or in-force basis (expired and revoked ones are frozen)."""
    basis = service.update_basis(
        session=session,
        actor=principal,
        basis_id=basis_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return service.basis_read(session=session, basis=basis)


@router.post("/legal-bases/{basis_id}/status", response_model=LegalBasisRead)
def change_legal_basis_status(
    basis_id: int, body: StatusChange, session: SessionDep, principal: PrincipalDep
) -> LegalBasisRead:
    """Put a basis in force, or mark it expired or revoked (audit-logged)."""
    basis = service.change_status(
        session=session,
        actor=principal,
        basis_id=basis_id,
        status=BasisStatus(body.status),
        reason=body.reason,
    )
    return service.basis_read(session=session, basis=basis)


@router.post(
    "/legal-bases/{basis_id}/documents",
    response_model=DocumentRead,
    status_code=status.HTTP_201_CREATED,
)
def upload_legal_basis_document(
    basis_id: int,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="a PDF, at most 10 MiB")],
) -> DocumentRead:
    """Attach a PDF (decision, assessment, permit); stored with its SHA-256."""
    # One byte over the limit is enough to refuse it without reading an arbitrarily large body.
    content = file.file.read(documents.MAX_DOCUMENT_BYTES + 1)
    doc = service.add_document(
        session=session,
        actor=principal,
        basis_id=basis_id,
        filename=file.filename,
        content=content,
        documents_dir=settings.data_dir / "documents",
    )
    return DocumentRead.model_validate(doc)


@router.get(
    "/legal-bases/{basis_id}/documents/{document_id}",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the PDF"}},
)
def download_legal_basis_document(
    basis_id: int,
    document_id: int,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    """Download an attached document (its SHA-256 is checked first and sent as a header)."""
    doc, content = service.read_document(
        session=session,
        principal=principal,
        basis_id=basis_id,
        document_id=document_id,
        documents_dir=settings.data_dir / "documents",
    )
    return documents.pdf_response(doc, content)
