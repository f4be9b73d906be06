"""Export requests: one police request for footage of one organisation's cameras."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vms.core.db import Base, utcnow


class ExportStatus(enum.StrEnum):
    requested = "requested"  # waiting for the owning organisation's DPO or admin
    approved = "approved"  # waiting for the worker
    building = "building"  # `progress` says how far
    ready = "ready"  # the package can be downloaded by the requester
    downloaded = "downloaded"  # downloaded at least once; still downloadable until expiry
    rejected = "rejected"
    failed = "failed"  # `failure_reason` says why; a DPO/admin may approve again to retry
    expired = "expired"  # the package was deleted after `export_ttl_hours`
    closed = "closed"  # the requester (or an admin) closed the request


class LegalGroundCategory(enum.StrEnum):
    preliminary_investigation = "preliminary_investigation"  # förundersökning (RB 23 kap.)
    crime_prevention = "crime_prevention"  # brottsförebyggande verksamhet (PL)
    danger_to_life_or_health = "danger_to_life_or_health"
    court_order = "court_order"
    other = "other"


class ExportRequest(Base):
    __tablename__ = "export_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The requester's organisation (police) and the cameras' owner, who approves.
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    requester_organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id"), index=True
    )
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    camera_ids: Mapped[list[int]] = mapped_column(JSON)
    case_number: Mapped[str] = mapped_column(String(64), index=True)
    legal_ground_category: Mapped[LegalGroundCategory] = mapped_column(
        Enum(LegalGroundCategory, native_enum=False, length=32)
    )
    legal_ground_text: Mapped[str] = mapped_column(Text)
    officer: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    start: Mapped[dt.datetime]
    end: Mapped[dt.datetime]
    status: Mapped[ExportStatus] = mapped_column(
        Enum(ExportStatus, native_enum=False, length=32), default=ExportStatus.requested, index=True
    )
    progress: Mapped[int] = mapped_column(Integer, default=0)
    hold_id: Mapped[int | None] = mapped_column(Integer, index=True)
    keep_hold: Mapped[bool] = mapped_column(default=False)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    build_started_at: Mapped[dt.datetime | None]
    built_at: Mapped[dt.datetime | None]
    package_path: Mapped[str | None] = mapped_column(String(500))  # relative to the data dir
    package_sha256: Mapped[str | None] = mapped_column(String(64))
    package_size: Mapped[int | None] = mapped_column(BigInteger)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    download_count: Mapped[int] = mapped_column(Integer, default=0)
    last_downloaded_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    close_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
