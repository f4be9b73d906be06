"""Routes for legal holds, deletion receipts and the DPO retention report."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime
from sqlalchemy.orm import Session

from retention import report as report_service
from retention import service
from retention.models import LegalHold
from retention.schemas import (
    HoldCreate,
    HoldRead,
    HoldRelease,
    ReceiptRead,
    RetentionReportRead,
)
from vms.core.db import utcnow
from vms.core.deps import PrincipalDep, SessionDep
from vms.core.pagination import Page, PageDep

router = APIRouter(prefix="/api/v1")


def _read(session: Session, holds: list[LegalHold]) -> list[HoldRead]:
    cams = service.hold_camera_ids(session=session, hold_ids=[h.id for h in holds])
    now = utcnow()
    out = []
    for hold in holds:
        item = HoldRead.model_validate(hold)
        item.camera_ids = cams.get(hold.id, [])
        item.active = service.hold_is_active(hold, now)
        out.append(item)
    return out


@router.post(
    "/holds", response_model=HoldRead, status_code=status.HTTP_201_CREATED, tags=["legal holds"]
)
def create_hold(body: HoldCreate, session: SessionDep, principal: PrincipalDep) -> HoldRead:
    """Pin footage of some cameras over a time span: it is never deleted while the hold lasts
    (police for their own cases, DPO, admin)."""
    hold = service.create_hold(
        session=session,
        actor=principal,
        camera_ids=body.camera_ids,
        start=body.start,
        end=body.end,
        case_number=body.case_number,
        reason=body.reason,
        expires_at=body.expires_at,
    )
    return _read(session, [hold])[0]


@router.get("/holds", response_model=Page[HoldRead], tags=["legal holds"])
def list_holds(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    camera_id: int | None = None,
    active: bool | None = None,
    case_number: str | None = Query(None, max_length=64),
) -> Page[HoldRead]:
    """Holds you may see: police their own, DPO those of their organisations, admin all."""
    rows, total = service.list_holds(
        session=session,
        actor=principal,
        page=page,
        camera_id=camera_id,
        active=active,
        case_number=case_number,
    )
    return Page(items=_read(session, rows), total=total, limit=page.limit, offset=page.offset)


@router.get("/holds/{hold_id}", response_model=HoldRead, tags=["legal holds"])
def get_hold(hold_id: int, session: SessionDep, principal: PrincipalDep) -> HoldRead:
    """One legal hold."""
    hold = service.get_hold_or_raise(session=session, actor=principal, hold_id=hold_id)
    return _read(session, [hold])[0]


@router.post("/holds/{hold_id}/release", response_model=HoldRead, tags=["legal holds"])
def release_hold(
    hold_id: int, body: HoldRelease, session: SessionDep, principal: PrincipalDep
) -> HoldRead:
    """Release a hold (its creator, or a DPO/admin of its cameras): the footage falls back under
    the normal retention rules at the next sweep."""
    hold = service.release_hold(
        session=session, actor=principal, hold_id=hold_id, reason=body.reason
    )
    return _read(session, [hold])[0]


@router.get("/retention/receipts", response_model=Page[ReceiptRead], tags=["retention"])
def list_receipts(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    camera_id: int | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Page[ReceiptRead]:
    """Deletion receipts (oldest first): which file went, when, its SHA-256 and the rule applied."""
    rows, total = service.list_receipts(
        session=session,
        principal=principal,
        camera_id=camera_id,
        since=since,
        until=until,
        limit=page.limit,
        offset=page.offset,
    )
    return Page(
        items=[ReceiptRead.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get(
    "/reports/retention",
    response_model=RetentionReportRead,
    tags=["retention"],
    responses={
        200: {
            "content": {"text/csv": {}, "text/html": {}},
            "description": "JSON, CSV (format=csv) or a printable HTML page (format=html)",
        }
    },
)
def retention_report(
    session: SessionDep,
    principal: PrincipalDep,
    format: Literal["json", "csv", "html"] = "json",
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    organisation_id: int | None = None,
    camera_id: int | None = None,
) -> RetentionReportRead | Response:
    """Per camera: configured and allowed retention, oldest footage, holds, deletions and
    violations (admin, DPO)."""
    report = service.retention_report(
        session=session,
        principal=principal,
        since=since,
        until=until,
        organisation_id=organisation_id,
        camera_id=camera_id,
    )
    if format == "csv":
        return Response(
            report_service.to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="retention-report.csv"'},
        )
    if format == "html":
        return Response(report_service.to_html(report), media_type="text/html; charset=utf-8")
    return report
