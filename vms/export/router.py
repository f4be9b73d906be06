"""Routes for the police export workflow and the cross-organisation camera search."""

from __future__ import annotations

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import AwareDatetime

from vms.core.deps import PrincipalDep, SecretBoxDep, SessionDep, SettingsDep
from vms.core.pagination import Page, PageDep
from vms.export import search, service
from vms.export.models import ExportStatus
from vms.export.schemas import (
    ApproveBody,
    CameraNearPage,
    CloseBody,
    ExportCreate,
    ExportRead,
    RejectBody,
)

router = APIRouter(prefix="/api/v1")


@router.get("/cameras/near", response_model=CameraNearPage, tags=["exports"])
def cameras_near(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    lat: float = Query(..., ge=-90, le=90, allow_inf_nan=False, description="WGS84"),
    lon: float = Query(..., ge=-180, le=180, allow_inf_nan=False, description="WGS84"),
    radius_m: float = Query(..., gt=0, le=search.MAX_RADIUS_M, allow_inf_nan=False),
    start: AwareDatetime | None = Query(None, description="with end: is there footage?"),
    end: AwareDatetime | None = None,
) -> CameraNearPage:
    """Registered cameras near a point, across organisations (police, admin): owner, contact,
    purpose, mode, retention and whether footage exists for a range. Never stream details."""
    return search.search_near(
        session=session,
        actor=principal,
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        start=start,
        end=end,
        page=page,
    )


@router.get(
    "/exports/public-key",
    response_class=PlainTextResponse,
    tags=["exports"],
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def public_key(session: SessionDep, settings: SettingsDep, box: SecretBoxDep) -> PlainTextResponse:
    """The installation's Ed25519 export signing key (PEM). Public: no token needed."""
    key = service.signing_key(session=session, settings=settings, box=box)
    return PlainTextResponse(
        key.public_pem.decode("ascii"),
        media_type="application/x-pem-file",
        headers={"X-Key-Fingerprint-SHA256": key.fingerprint},
    )


@router.post(
    "/exports", response_model=ExportRead, status_code=status.HTTP_201_CREATED, tags=["exports"]
)
def create_export(body: ExportCreate, session: SessionDep, principal: PrincipalDep) -> ExportRead:
    """Request footage (police); places a legal hold on it at once."""
    req = service.create_request(session=session, actor=principal, data=body)
    return service.to_read(req, session)


@router.get("/exports", response_model=Page[ExportRead], tags=["exports"])
def list_exports(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    status_is: ExportStatus | None = Query(None, alias="status"),
    case_number: str | None = Query(None, max_length=64),
) -> Page[ExportRead]:
    """Requests you may see: police their organisation's, DPOs their organisations' cameras',
    admin all."""
    rows, total = service.list_requests(
        session=session, actor=principal, page=page, status=status_is, case_number=case_number
    )
    return Page(
        items=[service.to_read(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/exports/{export_id}", response_model=ExportRead, tags=["exports"])
def get_export(export_id: int, session: SessionDep, principal: PrincipalDep) -> ExportRead:
    """One request, with its status and build progress."""
    return service.read_request(session=session, actor=principal, export_id=export_id)


@router.post("/exports/{export_id}/approve", response_model=ExportRead, tags=["exports"])
def approve_export(
    export_id: int,
    session: SessionDep,
    principal: PrincipalDep,
    body: ApproveBody | None = None,
) -> ExportRead:
    """Approve (or retry a failed build), as DPO or admin of the cameras' organisation."""
    req = service.approve(
        session=session, actor=principal, export_id=export_id, note=body.note if body else None
    )
    return service.to_read(req)


@router.post("/exports/{export_id}/reject", response_model=ExportRead, tags=["exports"])
def reject_export(
    export_id: int, body: RejectBody, session: SessionDep, principal: PrincipalDep
) -> ExportRead:
    """Reject with a reason, as DPO or admin of the cameras' organisation; releases the hold."""
    req = service.reject(session=session, actor=principal, export_id=export_id, reason=body.reason)
    return service.to_read(req)


@router.post("/exports/{export_id}/close", response_model=ExportRead, tags=["exports"])
def close_export(
    export_id: int,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    body: CloseBody | None = None,
) -> ExportRead:
    """Close a request (the requesting officer or an admin): deletes the package and releases
    the hold unless `keep_hold`."""
    body = body or CloseBody()
    req = service.close(
        session=session,
        actor=principal,
        settings=settings,
        export_id=export_id,
        keep_hold=body.keep_hold,
        reason=body.reason,
    )
    return service.to_read(req)


@router.get(
    "/exports/{export_id}/download",
    response_class=FileResponse,
    tags=["exports"],
    responses={200: {"content": {"application/zip": {}}}},
)
def download_export(
    export_id: int, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> FileResponse:
    """The package zip, for the requesting officer only; every download is audit-logged."""
    out = service.download(session=session, actor=principal, settings=settings, export_id=export_id)
    return FileResponse(
        out.path,
        media_type="application/zip",
        filename=out.filename,
        headers={"X-Package-SHA256": out.sha256},
    )
