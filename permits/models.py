"""Legal bases (interest assessments and IMY permits) and their attached documents."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vms.core.db import Base, utcnow


class BasisKind(enum.StrEnum):
    assessment = "assessment"  # intresseavvägning (since 1 April 2025)
    permit = "permit"  # IMY permit granted before 1 April 2025, still valid documentation
    not_required = "not_required"  # e.g. the place is not accessible to the public


class BasisStatus(enum.StrEnum):
    draft = "draft"
    in_force = "in_force"
    expired = "expired"
    revoked = "revoked"


class LegalBasis(Base):
    __tablename__ = "legal_bases"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[BasisKind] = mapped_column(Enum(BasisKind, native_enum=False, length=32))
    status: Mapped[BasisStatus] = mapped_column(
        Enum(BasisStatus, native_enum=False, length=32), default=BasisStatus.draft
    )
    title: Mapped[str] = mapped_column(String(200))
    # What the basis allows.
    purpose: Mapped[str | None] = mapped_column(Text)
    less_intrusive_measures: Mapped[str | None] = mapped_column(Text)
    covered_area: Mapped[str | None] = mapped_column(Text)
    active_hours: Mapped[str | None] = mapped_column(Text)
    privacy_measures: Mapped[str | None] = mapped_column(Text)
    max_retention_hours: Mapped[int] = mapped_column(Integer, default=72)
    retention_justification: Mapped[str | None] = mapped_column(Text)
    live_view_allowed: Mapped[bool] = mapped_column(default=False)
    recording_allowed: Mapped[bool] = mapped_column(default=False)
    masking_required: Mapped[bool] = mapped_column(default=True)
    # Assessment.
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[dt.datetime | None]
    review_by: Mapped[dt.date | None]
    # Permit.
    authority: Mapped[str | None] = mapped_column(String(200))
    case_number: Mapped[str | None] = mapped_column(String(64))
    decision_date: Mapped[dt.date | None]
    valid_from: Mapped[dt.datetime | None]
    valid_until: Mapped[dt.datetime | None]
    conditions: Mapped[str | None] = mapped_column(Text)
    # not_required.
    not_required_reason: Mapped[str | None] = mapped_column(Text)
    # Life cycle. The documentation must be kept 5 years after the surveillance ends.
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    surveillance_ended_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LegalBasisDocument(Base):
    __tablename__ = "legal_basis_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    legal_basis_id: Mapped[int] = mapped_column(ForeignKey("legal_bases.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(500))
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    uploaded_by: Mapped[int | None]
