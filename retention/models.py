"""The footage index: segments and gaps, and the legal holds that pin footage."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vms.core.db import Base, utcnow


class SegmentState(enum.StrEnum):
    ok = "ok"
    missing = "missing"  # the index row outlived its file (found by reconciliation)
    # The deletion receipt is committed and the file is being removed: a restarted sweep
    # finishes these rows without writing a second receipt.
    deleting = "deleting"
    # Recorded as the camera sent it (passthrough) but not covered by a passing mask check:
    # never played back or exported until re-masked by transcoding (`vms footage remask`).
    quarantined = "quarantined"


class MaskedBy(enum.StrEnum):
    vms = "vms"  # decoded, masked and encoded by the pipeline
    camera = "camera"  # the camera's own stream, its masks verified on keyframes (passthrough)


class Segment(Base):
    """One finished, fsynced, hashed MP4 of masked video. Rows exist only for complete files."""

    __tablename__ = "segments"
    __table_args__ = (
        # The sweep asks "which segments of this camera ended before the cut-off": (camera, end).
        Index("ix_segments_camera_end", "camera_id", "end"),
        Index("ix_segments_camera_start", "camera_id", "start"),
        # A restarted sweep looks for rows left "deleting" without reading the whole index.
        Index("ix_segments_state", "state"),
        # Receipts cite segment ids: SQLite must never hand a deleted segment's id to a new one.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    start: Mapped[dt.datetime]
    end: Mapped[dt.datetime] = mapped_column(index=True)
    path: Mapped[str] = mapped_column(String(500), unique=True)  # relative to the data dir
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    mask_plan_hash: Mapped[str | None] = mapped_column(String(64))
    codec: Mapped[str] = mapped_column(String(32), default="h264")
    width: Mapped[int]
    height: Mapped[int]
    frames: Mapped[int] = mapped_column(default=0)
    state: Mapped[SegmentState] = mapped_column(
        Enum(SegmentState, native_enum=False, length=16), default=SegmentState.ok
    )
    masked_by: Mapped[MaskedBy] = mapped_column(
        Enum(MaskedBy, native_enum=False, length=16),
        default=MaskedBy.vms,
        server_default=MaskedBy.vms.value,
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Gap(Base):
    """A time span without footage and why: camera down, blocked by policy, disk full..."""

    __tablename__ = "recording_gaps"
    __table_args__ = (Index("ix_recording_gaps_camera_start", "camera_id", "start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"))
    start: Mapped[dt.datetime]
    end: Mapped[dt.datetime | None]  # None while the gap is still open
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)


class LegalHold(Base):
    """Evidence lock: footage of these cameras in [start, end) is never deleted while active."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    case_number: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text)
    start: Mapped[dt.datetime]
    end: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    created_by: Mapped[int | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    released_at: Mapped[dt.datetime | None]
    released_by: Mapped[int | None]
    release_reason: Mapped[str | None] = mapped_column(Text)
    export_request_id: Mapped[int | None] = mapped_column(Integer, index=True)


class LegalHoldCamera(Base):
    __tablename__ = "legal_hold_cameras"

    hold_id: Mapped[int] = mapped_column(
        ForeignKey("legal_holds.id", ondelete="CASCADE"), primary_key=True
    )
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"), primary_key=True, index=True)


class RetentionSweep(Base):
    """One run of the sweep: when, what it deleted, and whether disk pressure cut retention.

    The DPO report shows the last run; `shortened` carries the disk-pressure state from one
    run to the next (camera id -> until when that camera keeps less than its policy allows).
    """

    __tablename__ = "retention_sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(index=True)
    finished_at: Mapped[dt.datetime | None]
    dry_run: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[int] = mapped_column(default=0)
    deleted_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    pressure_deleted: Mapped[int] = mapped_column(default=0)
    recovered: Mapped[int] = mapped_column(default=0)
    shortened: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
