"""Test data for sharing: agreements built directly (in any state), and the API's payloads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from registry.models import Camera, Site
from sharing.models import (
    AgreementStatus,
    ShareScope,
    SharingAgreement,
    SharingAgreementCamera,
    SharingAgreementDocument,
    SharingSession,
)
from vms.core import documents
from vms.core.db import utcnow
from vms.core.models import Organisation, User

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
DAY = dt.timedelta(days=1)


def agreement(
    session: Session,
    owner: Organisation,
    recipient: Organisation,
    cameras: Sequence[Camera] = (),
    *,
    status: AgreementStatus | str = AgreementStatus.in_force,
    scope: ShareScope | str = ShareScope.live,
    site: Site | None = None,
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
    documents_dir: Path | None = None,
    **fields: Any,
) -> SharingAgreement:
    """An agreement (in force, live, valid from yesterday for a year, unless told otherwise),
    with its document row (and file, given `documents_dir`)."""
    now = utcnow()
    values: dict[str, Any] = {
        "owner_organisation_id": owner.id,
        "recipient_organisation_id": recipient.id,
        "title": "Trafikkameror till RLC",
        "purpose": "Lägesbild vid trafikolyckor och större evenemang",
        "legal_ground": "GDPR art. 6.1 e; polislagen 1984:387",
        "scope": ShareScope(scope),
        "site_id": site.id if site else None,
        "valid_from": valid_from or now - DAY,
        "valid_until": valid_until or now + 365 * DAY,
        "owner_contact_name": "Trafikkontoret",
        "owner_contact_email": "trafik@kommun.example.se",
        "recipient_contact_name": "RLC vakthavande",
        "recipient_contact_phone": "+46 10 000 00 00",
        "status": AgreementStatus(status),
    }
    row = SharingAgreement(**(values | fields))
    session.add(row)
    session.flush()
    for camera in cameras:
        session.add(SharingAgreementCamera(agreement_id=row.id, camera_id=camera.id))
    digest, relative = (
        documents.store_pdf(PDF, documents_dir) if documents_dir else ("0" * 64, "00/none.pdf")
    )
    session.add(
        SharingAgreementDocument(
            agreement_id=row.id,
            filename="avtal.pdf",
            content_type="application/pdf",
            size_bytes=len(PDF),
            sha256=digest,
            storage_path=relative,
        )
    )
    session.flush()
    return row


def stream_session(
    session: Session, agreement_row: SharingAgreement, camera: Camera, user: User, **fields: Any
) -> SharingSession:
    now = utcnow()
    values: dict[str, Any] = {
        "key": f"k{agreement_row.id}x{camera.id}x{user.id}x{now.timestamp():.0f}"[:32],
        "agreement_id": agreement_row.id,
        "camera_id": camera.id,
        "owner_organisation_id": agreement_row.owner_organisation_id,
        "recipient_organisation_id": agreement_row.recipient_organisation_id,
        "user_id": user.id,
        "user_email": user.email,
        "protocol": "rtsp",
        "started_at": now,
        "expires_at": now + dt.timedelta(hours=1),
    }
    row = SharingSession(**(values | fields))
    session.add(row)
    session.flush()
    return row


def create_body(recipient_id: int, camera_ids: Sequence[int], **extra: Any) -> dict[str, Any]:
    """A complete POST /sharing-agreements body (it can be put in force once a PDF is on it)."""
    now = utcnow()
    body: dict[str, Any] = {
        "recipient_organisation_id": recipient_id,
        "title": "Trafikkameror till Polisen RLC",
        "purpose": "Lägesbild i realtid vid olyckor och evenemang",
        "legal_ground": "GDPR art. 6.1 e; kamerabevakningslagen 2018:1200",
        "scope": "live",
        "camera_ids": list(camera_ids),
        "valid_from": (now - dt.timedelta(minutes=5)).isoformat(),
        "valid_until": (now + 365 * DAY).isoformat(),
        "owner_contact": {"name": "Trafikkontoret", "email": "trafik@kommun.example.se"},
        "recipient_contact": {"name": "RLC vakthavande", "phone": "+46 10 000 00 00"},
    }
    return body | extra
