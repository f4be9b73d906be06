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


class RecordingPath(enum.StrEnum):
    # Decode, mask, encode: any plan, any source.
    transcode = "transcode"
    # The camera draws the plan's masks (ONVIF Media2) and its H.264 is recorded as it comes,
    # verified by checking keyframes; static plans on ONVIF cameras only.
    passthrough = "passthrough"


class PassthroughStatus(enum.StrEnum):
    verifying = "verifying"  # masks pushed, no keyframe has passed the check yet
    verified = "verified"  # the last check passed; recording the camera's stream as it comes
    failed = "failed"  # a check failed: the camera records through transcode (or is blocked)
    unsupported = "unsupported"  # the device cannot draw the plan (no Media2 masks, limits)


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
    # ONVIF: the profile live view reads (a substream); None: live view shows the main profile.
    source_live_profile_token: Mapped[str | None] = mapped_column(String(100))
    source_path: Mapped[str | None] = mapped_column(String(1000))
    source_secret: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Stockholm")
    schedule: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    signage_posted: Mapped[bool] = mapped_column(default=False)
    signage_text: Mapped[str | None] = mapped_column(Text)
    # The recording profile: what of the stream is recorded (None: every frame, full size).
    record_fps: Mapped[float | None] = mapped_column(Float)
    record_height: Mapped[int | None]
    recording_path: Mapped[RecordingPath] = mapped_column(
        Enum(RecordingPath, native_enum=False, length=16),
        default=RecordingPath.transcode,
        server_default=RecordingPath.transcode.value,
    )
    mask_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    mask_plan_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[CameraStatus] = mapped_column(
        Enum(CameraStatus, native_enum=False, length=32), default=CameraStatus.active
    )
    # A shortened retention applies to footage recorded after the change: what ended before
    # `retention_kept_before` keeps `retention_kept_hours` until a DPO or admin confirms the
    # purge (so editing a camera cannot destroy its evidence at the next sweep).
    retention_kept_before: Mapped[dt.datetime | None]
    retention_kept_hours: Mapped[int | None]
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


class PassthroughState(Base):
    """Where a passthrough camera stands, written by its worker: the supervisor reads it to
    fall back to transcoding after a failed check, the DPO's report to show verification."""

    __tablename__ = "passthrough_states"

    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"), primary_key=True)
    status: Mapped[PassthroughStatus] = mapped_column(
        Enum(PassthroughStatus, native_enum=False, length=16)
    )
    # The plan the state is about: a new plan is pushed and verified afresh.
    plan_hash: Mapped[str | None] = mapped_column(String(64))
    # vms's masks on the device (Media2 tokens) and the colour they were drawn in (Y, Cb, Cr).
    mask_tokens: Mapped[list[str]] = mapped_column(JSON, default=list)
    mask_color: Mapped[list[float] | None] = mapped_column(JSON)
    verified_since: Mapped[dt.datetime | None]
    last_verified_at: Mapped[dt.datetime | None]
    checks_passed: Mapped[int] = mapped_column(default=0)
    failed_at: Mapped[dt.datetime | None]
    # Why it failed or is unsupported (check reason, device error kind) and the words for people.
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
