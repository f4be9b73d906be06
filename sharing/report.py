"""The DPO's per-agreement report: every session under one agreement, who watched which camera
from when until when, and the hours viewed per user and camera (audited); and its CSV."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sharing.agreements import agreement_read, readable
from sharing.models import SharingSession
from sharing.roles import REPORT_ROLES
from sharing.schemas import AgreementReport, CameraTotal, SessionRow, ViewerTotal
from vms.core import audit
from vms.core.auth import Principal
from vms.core.csvout import to_csv
from vms.core.db import utcnow


def agreement_report(
    *, session: Session, principal: Principal, agreement_id: int, export_format: str = "json"
) -> AgreementReport:
    """Every session under one agreement: who watched which camera, from when until when, and
    the hours viewed per user and camera (the owner's DPO and admin; audited)."""
    principal.require_role(*REPORT_ROLES)
    agreement = readable(
        session=session,
        principal=principal,
        agreement_id=agreement_id,
        owner_roles=REPORT_ROLES,
        recipient_roles=(),
    )
    rows = list(
        session.scalars(
            select(SharingSession)
            .where(SharingSession.agreement_id == agreement.id)
            .order_by(SharingSession.started_at, SharingSession.id)
        )
    )
    by_user: dict[int, ViewerTotal] = {}
    by_camera: dict[int, CameraTotal] = {}
    for r in rows:
        hours = r.viewed_seconds / 3600
        u = by_user.setdefault(r.user_id, ViewerTotal(user_id=r.user_id, user_email=r.user_email,
                                                      sessions=0, hours_viewed=0.0))  # fmt: skip
        u.sessions += 1
        u.hours_viewed += hours
        c = by_camera.setdefault(r.camera_id, CameraTotal(camera_id=r.camera_id, sessions=0,
                                                          hours_viewed=0.0))  # fmt: skip
        c.sessions += 1
        c.hours_viewed += hours
    for u in by_user.values():
        u.hours_viewed = round(u.hours_viewed, 4)
    for c in by_camera.values():
        c.hours_viewed = round(c.hours_viewed, 4)
    report = AgreementReport(
        generated_at=utcnow(),
        agreement=agreement_read(session=session, agreement=agreement),
        sessions=len(rows),
        open_sessions=sum(1 for r in rows if r.ended_at is None),
        hours_viewed=round(sum(r.viewed_seconds for r in rows) / 3600, 4),
        by_user=sorted(by_user.values(), key=lambda t: t.user_id),
        by_camera=sorted(by_camera.values(), key=lambda t: t.camera_id),
        items=[SessionRow.model_validate(r, from_attributes=True) for r in rows],
    )
    audit.record(
        session,
        action="sharing.report",
        actor=principal,
        organisation_id=agreement.owner_organisation_id,
        target_type="sharing_agreement",
        target_id=agreement.id,
        details={"format": export_format, "sessions": len(rows)},
    )
    return report


def report_csv(report: AgreementReport) -> str:
    """One session per row."""
    columns = list(SessionRow.model_fields)
    rows = (
        [item[c] for c in columns] for item in (i.model_dump(mode="json") for i in report.items)
    )
    return to_csv(["agreement_id", *columns], ([report.agreement.id, *r] for r in rows))
