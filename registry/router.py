"""Routes for sites, cameras, the register, the compliance report and the transparency map."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile, status
from pydantic import AwareDatetime

from registry import importer, reports, service, sites
from registry.models import CameraMode, CameraStatus
from registry.schemas import (
    CameraCreate,
    CameraRead,
    CameraUpdate,
    ComplianceReport,
    GeoFeatureCollection,
    ImportResult,
    PermitStatus,
    PolicyRead,
    RegisterRead,
    SiteCreate,
    SiteRead,
    SiteUpdate,
)
from vms.core.deps import PrincipalDep, SecretBoxDep, SessionDep, SettingsDep
from vms.core.pagination import Page, PageDep

router = APIRouter(prefix="/api/v1")
MAX_IMPORT_BYTES = 20 * 1024 * 1024

# --- sites ---------------------------------------------------------------------------------


@router.post("/sites", response_model=SiteRead, status_code=status.HTTP_201_CREATED, tags=["sites"])
def create_site(body: SiteCreate, session: SessionDep, principal: PrincipalDep) -> SiteRead:
    """Create a site (building or area) in your organisation (admin: any)."""
    return SiteRead.model_validate(sites.create_site(session=session, actor=principal, data=body))


@router.get("/sites", response_model=Page[SiteRead], tags=["sites"])
def list_sites(
    session: SessionDep, principal: PrincipalDep, page: PageDep, organisation_id: int | None = None
) -> Page[SiteRead]:
    """Sites of the organisations you can read."""
    rows, total = sites.list_sites(
        session=session, principal=principal, page=page, organisation_id=organisation_id
    )
    return Page(
        items=[SiteRead.model_validate(s) for s in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/sites/{site_id}", response_model=SiteRead, tags=["sites"])
def get_site(site_id: int, session: SessionDep, principal: PrincipalDep) -> SiteRead:
    """One site."""
    site = sites.get_site_or_raise(session=session, site_id=site_id, principal=principal)
    return SiteRead.model_validate(site)


@router.patch("/sites/{site_id}", response_model=SiteRead, tags=["sites"])
def update_site(
    site_id: int, body: SiteUpdate, session: SessionDep, principal: PrincipalDep
) -> SiteRead:
    """Rename a site or change its address."""
    site = sites.update_site(
        session=session,
        actor=principal,
        site_id=site_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return SiteRead.model_validate(site)


# --- cameras -------------------------------------------------------------------------------


@router.post(
    "/cameras", response_model=CameraRead, status_code=status.HTTP_201_CREATED, tags=["cameras"]
)
def create_camera(
    body: CameraCreate,
    session: SessionDep,
    settings: SettingsDep,
    box: SecretBoxDep,
    principal: PrincipalDep,
) -> CameraRead:
    """Register a camera. Refused (422) when it asks for more than its legal basis allows,
    unless it is saved paused."""
    camera = service.create_camera(
        session=session, actor=principal, box=box, data=body, file_roots=settings.file_source_roots
    )
    return service.to_read(session=session, camera=camera)


@router.get("/cameras", response_model=Page[CameraRead], tags=["cameras"])
def list_cameras(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    organisation_id: int | None = None,
    site_id: int | None = None,
    mode: CameraMode | None = None,
    status: CameraStatus | None = None,
    permit_status: PermitStatus | None = None,
    q: str | None = Query(None, max_length=200, description="search name, purpose, address"),
) -> Page[CameraRead]:
    """Cameras of the organisations you can read (not for police)."""
    items, total = service.list_cameras(
        session=session,
        principal=principal,
        page=page,
        organisation_id=organisation_id,
        site_id=site_id,
        mode=mode,
        status=status,
        permit_status_is=permit_status,
        q=q,
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/cameras.geojson", response_model=GeoFeatureCollection, tags=["cameras"])
def cameras_geojson(
    session: SessionDep, principal: PrincipalDep, organisation_id: int | None = None
) -> Response:
    """Camera locations with purpose, owner, mode and retention for a transparency map (any
    role; admin and police see every organisation). No stream details, no contact persons."""
    collection = reports.geojson(
        session=session, principal=principal, organisation_id=organisation_id
    )
    return Response(content=collection.model_dump_json(), media_type="application/geo+json")


@router.post("/cameras/import", response_model=ImportResult, tags=["cameras"])
def import_cameras(
    session: SessionDep,
    settings: SettingsDep,
    box: SecretBoxDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="CSV, UTF-8; columns in docs/registry.md")],
    organisation_id: int | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Import a spreadsheet register. All or nothing: a file with bad rows imports nothing and
    the 422 names every bad row, column and reason."""
    return importer.import_cameras(
        session=session,
        actor=principal,
        box=box,
        file_roots=settings.file_source_roots,
        organisation_id=organisation_id
        if organisation_id is not None
        else principal.organisation_id,
        content=file.file.read(MAX_IMPORT_BYTES + 1),
        dry_run=dry_run,
    )


@router.get("/cameras/{camera_id}", response_model=CameraRead, tags=["cameras"])
def get_camera(camera_id: int, session: SessionDep, principal: PrincipalDep) -> CameraRead:
    """One camera (credentials are never returned)."""
    return service.read_camera(session=session, principal=principal, camera_id=camera_id)


@router.patch("/cameras/{camera_id}", response_model=CameraRead, tags=["cameras"])
def update_camera(
    camera_id: int,
    body: CameraUpdate,
    session: SessionDep,
    settings: SettingsDep,
    box: SecretBoxDep,
    principal: PrincipalDep,
) -> CameraRead:
    """Change a camera, pause or activate it. Nested objects are replaced as a whole."""
    camera = service.update_camera(
        session=session,
        actor=principal,
        box=box,
        camera_id=camera_id,
        data=body,
        file_roots=settings.file_source_roots,
    )
    return service.to_read(session=session, camera=camera)


@router.delete("/cameras/{camera_id}", response_model=CameraRead, tags=["cameras"])
def decommission_camera(camera_id: int, session: SessionDep, principal: PrincipalDep) -> CameraRead:
    """Decommission a camera; it stays in the register for 5 years."""
    camera = service.decommission_camera(session=session, actor=principal, camera_id=camera_id)
    return service.to_read(session=session, camera=camera)


@router.post(
    "/cameras/{camera_id}/retention/confirm-shortening",
    response_model=CameraRead,
    tags=["cameras"],
)
def confirm_retention_shortening(
    camera_id: int, session: SessionDep, principal: PrincipalDep
) -> CameraRead:
    """Let a shortened retention reach the footage recorded before it was shortened (the DPO
    or an admin of the camera's organisation; audited). Until then that footage keeps the
    retention it was recorded under."""
    camera = service.confirm_retention_shortening(
        session=session, actor=principal, camera_id=camera_id
    )
    return service.to_read(session=session, camera=camera)


@router.post(
    "/cameras/{camera_id}/passthrough/retry",
    response_model=CameraRead,
    tags=["cameras"],
)
def retry_passthrough(camera_id: int, session: SessionDep, principal: PrincipalDep) -> CameraRead:
    """Forget a passthrough camera's failed check or unsupported device, so the pipeline
    pushes the masks and verifies afresh (after the camera was fixed; facility managers and
    admins of its organisation; audited). Until then it records through transcoding (or is
    blocked, per the installation's setting)."""
    camera = service.retry_passthrough(session=session, actor=principal, camera_id=camera_id)
    return service.to_read(session=session, camera=camera)


@router.get("/cameras/{camera_id}/policy", response_model=PolicyRead, tags=["cameras"])
def camera_policy(
    camera_id: int,
    session: SessionDep,
    principal: PrincipalDep,
    at: AwareDatetime | None = None,
) -> PolicyRead:
    """What the camera may do now (or at `at`) under its legal basis, and why not."""
    return service.camera_policy(session=session, principal=principal, camera_id=camera_id, at=at)


# --- DPO views -----------------------------------------------------------------------------


def _shared_recipients(request: Request) -> reports.SharedRecipients:
    # Wired by vms.api.create_app (issue 14): the sharing domain sits above the registry.
    lookup: reports.SharedRecipients = request.app.state.shared_recipients
    return lookup


@router.get(
    "/register",
    response_model=RegisterRead,
    tags=["register"],
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}},
)
def get_register(
    session: SessionDep,
    principal: PrincipalDep,
    organisation_id: int | None = None,
    format: Literal["json", "csv"] = "json",
    shared_recipients: reports.SharedRecipients = Depends(_shared_recipients),
) -> RegisterRead | Response:
    """The register of all camera surveillance (incl. cameras decommissioned in the last
    5 years) with the GDPR Art. 30 fields; audit-logged as an export."""
    report = reports.register(
        session=session,
        principal=principal,
        organisation_id=organisation_id,
        export_format=format,
        shared_recipients=shared_recipients,
    )
    if format == "json":
        return report
    stamp = report.generated_at.strftime("%Y%m%d")
    return Response(
        # A BOM so that spreadsheet programs read the file as UTF-8 (å, ä, ö).
        content="\ufeff" + reports.register_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="register-{stamp}.csv"'},
    )


@router.get("/compliance", response_model=ComplianceReport, tags=["register"])
def get_compliance(
    session: SessionDep, principal: PrincipalDep, organisation_id: int | None = None
) -> ComplianceReport:
    """Cameras in service that need attention: basis missing, draft, expiring, expired or
    revoked; asking more than the basis allows; > 72 h without justification; no signs; no
    mask plan where masking is required."""
    return reports.compliance_report(
        session=session, principal=principal, organisation_id=organisation_id
    )
