"""Sites and cameras. Decommissioned cameras stay: the register keeps them 5 years."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Enum, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vms.core.db import Base, utcnow


class CameraMode(enum.StrEnum):
    live = "live"
    recording = "recording"
    live_and_recording = "live_and_recording"


class CameraStatus(enum.StrEnum):
    active = "active"
    paused = "paused"
    decommissioned = "decommissioned"


class SourceKind(enum.StrEnum):
    rtsp = "rtsp"
    onvif = "onvif"
    file = "file"


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Camera(Base):
    __tablename__ = "cameras"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_contact_name: Mapped[str | None] = mapped_column(String(200))
    owner_contact_email: Mapped[str | None] = mapped_column(String(320))
    owner_contact_phone: Mapped[str | None] = mapped_column(String(50))
    address: Mapped[str | None] = mapped_column(String(300))
    lat: Mapped[float | None] = mapped_column(Float, index=True)
    lon: Mapped[float | None] = mapped_column(Float, index=True)
    mount_height_m: Mapped[float | None] = mapped_column(Float)
    direction_deg: Mapped[float | None] = mapped_column(Float)
    purpose: Mapped[str] = mapped_column(Text)
    purpose_category: Mapped[str] = mapped_column(String(64))
    mode: Mapped[CameraMode] = mapped_column(Enum(CameraMode, native_enum=False, length=32))
    retention_hours: Mapped[int] = mapped_column(Integer)
    legal_basis_id: Mapped[int | None] = mapped_column(ForeignKey("legal_bases.id"), index=True)
    # Stream source. Credentials live only in `source_secret` (Fernet, installation key); the
    # URL is stored without userinfo.
    source_kind: Mapped[SourceKind] = mapped_column(Enum(SourceKind, native_enum=False, length=16))
    source_url: Mapped[str | None] = mapped_column(String(1000))
    source_host: Mapped[str | None] = mapped_column(String(255))
    source_port: Mapped[int | None]
    source_profile_token: Mapped[str | None] = mapped_column(String(100))
    source_path: Mapped[str | None] = mapped_column(String(1000))
    source_secret: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Stockholm")
    schedule: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    signage_posted: Mapped[bool] = mapped_column(default=False)
    signage_text: Mapped[str | None] = mapped_column(Text)
    mask_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    mask_plan_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[CameraStatus] = mapped_column(
        Enum(CameraStatus, native_enum=False, length=32), default=CameraStatus.active
    )
    decommissioned_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MaskPlanVersion(Base):
    """Every plan a camera has had, by content hash: recordings and exports cite the hash."""

    __tablename__ = "mask_plan_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"), index=True)
    plan_hash: Mapped[str] = mapped_column(String(64), index=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None]
