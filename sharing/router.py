"""Routes for sharing agreements, their documents and report, and "cameras shared with us"."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Response, UploadFile, status

from sharing import service
from sharing.models import AgreementStatus
from sharing.schemas import (
    AgreementCreate,
    AgreementRead,
    AgreementReport,
    AgreementStatusChange,
    AgreementUpdate,
    DocumentRead,
    SharedCameraRead,
)
from vms.core import documents
from vms.core.deps import PrincipalDep, SessionDep, SettingsDep
from vms.core.pagination import Page, PageDep

router = APIRouter(prefix="/api/v1", tags=["sharing"])


@router.post(
    "/sharing-agreements", response_model=AgreementRead, status_code=status.HTTP_201_CREATED
)
def create_sharing_agreement(
    body: AgreementCreate, session: SessionDep, principal: PrincipalDep
) -> AgreementRead:
    """Draft an agreement sharing cameras (or a site's cameras) with another organisation
    (the owner's facility managers, admin)."""
    agreement = service.create_agreement(session=session, actor=principal, data=body)
    return service.agreement_read(session=session, agreement=agreement)


@router.get("/sharing-agreements", response_model=Page[AgreementRead])
def list_sharing_agreements(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    side: Literal["owner", "recipient"] | None = None,
    organisation_id: int | None = None,
    status: AgreementStatus | None = None,
    camera_id: int | None = None,
    in_force_now: bool | None = None,
) -> Page[AgreementRead]:
    """Agreements your organisations share (owner side) or receive (recipient side; not
    drafts); filters: side, organisation on either side, status, camera, in force now."""
    rows, total = service.list_agreements(
        session=session,
        principal=principal,
        page=page,
        side=side,
        organisation_id=organisation_id,
        status=status,
        camera_id=camera_id,
        in_force_now=in_force_now,
    )
    return Page(
        items=[service.agreement_read(session=session, agreement=a) for a in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/sharing-agreements/{agreement_id}", response_model=AgreementRead)
def get_sharing_agreement(
    agreement_id: int, session: SessionDep, principal: PrincipalDep
) -> AgreementRead:
    """One agreement with its cameras and documents."""
    return service.read_agreement(session=session, principal=principal, agreement_id=agreement_id)


@router.patch("/sharing-agreements/{agreement_id}", response_model=AgreementRead)
def update_sharing_agreement(
    agreement_id: int, body: AgreementUpdate, session: SessionDep, principal: PrincipalDep
) -> AgreementRead:
    """Change a draft (agreements in force are frozen)."""
    agreement = service.update_agreement(
        session=session,
        actor=principal,
        agreement_id=agreement_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return service.agreement_read(session=session, agreement=agreement)


@router.post("/sharing-agreements/{agreement_id}/status", response_model=AgreementRead)
def change_sharing_agreement_status(
    agreement_id: int, body: AgreementStatusChange, session: SessionDep, principal: PrincipalDep
) -> AgreementRead:
    """Put in force (the owner's DPO, admin), end or revoke (also the owner's facility
    manager). Open recipient sessions end within seconds of leaving force."""
    agreement = service.change_status(
        session=session,
        actor=principal,
        agreement_id=agreement_id,
        status=AgreementStatus(body.status),
        reason=body.reason,
    )
    return service.agreement_read(session=session, agreement=agreement)


@router.post(
    "/sharing-agreements/{agreement_id}/documents",
    response_model=DocumentRead,
    status_code=status.HTTP_201_CREATED,
)
def upload_sharing_agreement_document(
    agreement_id: int,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="a PDF, at most 10 MiB")],
) -> DocumentRead:
    """Attach the signed agreement (PDF); stored with its SHA-256."""
    content = file.file.read(documents.MAX_DOCUMENT_BYTES + 1)
    doc = service.add_document(
        session=session,
        actor=principal,
        agreement_id=agreement_id,
        filename=file.filename,
        content=content,
        documents_dir=settings.data_dir / "documents",
    )
    return DocumentRead.model_validate(doc)


@router.get(
    "/sharing-agreements/{agreement_id}/documents/{document_id}",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the PDF"}},
)
def download_sharing_agreement_document(
    agreement_id: int,
    document_id: int,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    """Download an agreement's document (SHA-256 checked first, sent as a header)."""
    doc, content = service.read_document(
        session=session,
        principal=principal,
        agreement_id=agreement_id,
        document_id=document_id,
        documents_dir=settings.data_dir / "documents",
    )
    return documents.pdf_response(doc, content)


@router.get(
    "/sharing-agreements/{agreement_id}/report",
    response_model=AgreementReport,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}},
)
def sharing_agreement_report(
    agreement_id: int,
    session: SessionDep,
    principal: PrincipalDep,
    format: Literal["json", "csv"] = "json",
) -> AgreementReport | Response:
    """The owner DPO's report on one agreement: every recipient session (who, which camera,
    from, until, time viewed), hours viewed per user and camera. Audit-logged."""
    report = service.agreement_report(
        session=session, principal=principal, agreement_id=agreement_id, export_format=format
    )
    if format == "json":
        return report
    return Response(
        content="\ufeff" + service.report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="sharing-{agreement_id}-sessions.csv"'
        },
    )


@router.get("/shared-cameras", response_model=Page[SharedCameraRead])
def list_shared_cameras(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    recipient_organisation_id: int | None = None,
) -> Page[SharedCameraRead]:
    """Cameras shared with your organisation by agreements in force, and whether the owner's
    policy allows live view right now (admin: name a recipient, or all)."""
    items, total = service.list_shared_cameras(
        session=session,
        principal=principal,
        page=page,
        recipient_organisation_id=recipient_organisation_id,
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
