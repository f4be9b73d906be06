"""Request and response bodies of the retention routes (holds, receipts, the DPO report)."""

from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from vms.core.schemas import StrictModel


class HoldCreate(StrictModel):
    camera_ids: list[int] = Field(min_length=1, max_length=1000)
    start: AwareDatetime
    end: AwareDatetime
    case_number: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=4000)
    expires_at: AwareDatetime | None = Field(
        None, description="when the hold lapses by itself; null: until released"
    )


class HoldRelease(StrictModel):
    reason: str = Field(min_length=1, max_length=4000)


class HoldRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    organisation_id: int
    case_number: str
    reason: str
    start: dt.datetime
    end: dt.datetime
    expires_at: dt.datetime | None
    created_by: int | None
    created_at: dt.datetime
    released_at: dt.datetime | None
    released_by: int | None
    release_reason: str | None
    export_request_id: int | None
    camera_ids: list[int] = []
    active: bool = True


class ReceiptRead(BaseModel):
    """One deletion, as the audit log proves it (`entry_hash` is the chained hash)."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: dt.datetime
    camera_id: int
    segment_id: int | None
    start: dt.datetime | None
    end: dt.datetime | None
    sha256: str | None
    size_bytes: int | None
    path: str
    rule: str
    reason: str
    index_state: str | None
    entry_hash: str


class HoldSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    hold_id: int
    case_number: str
    reason: str
    start: dt.datetime
    end: dt.datetime
    expires_at: dt.datetime | None
    segments: int
    size_bytes: int


class CameraRetentionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    camera_id: int
    camera_name: str
    organisation_id: int
    status: str
    configured_retention_hours: int
    allowed_retention_hours: int
    allowed_source: str
    legal_basis_id: int | None
    oldest_footage: dt.datetime | None
    newest_footage: dt.datetime | None
    segments: int
    size_bytes: int
    missing_segments: int
    quarantined_segments: int = Field(
        0,
        description="passthrough footage no passing mask check covers: kept for retention, "
        "not played or exported until re-masked (vms footage remask)",
    )
    held_segments: int
    held_bytes: int
    holds: list[HoldSummary]
    last_sweep_at: dt.datetime | None
    deletions_in_period: int
    pressure_deletions_in_period: int
    shortened_by_disk_pressure_until: dt.datetime | None
    violations: int
    oldest_violation: dt.datetime | None


class AuditAnchor(BaseModel):
    """The audit log's head when the report was made: keep the report, and a later
    `vms audit verify --expect-head SEQ:HASH` shows whether entries were removed since."""

    seq: int
    hash: str
    at: dt.datetime


class RetentionReportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    generated_at: dt.datetime
    period_start: dt.datetime
    period_end: dt.datetime
    last_sweep_at: dt.datetime | None
    cameras: list[CameraRetentionRead]
    total_violations: int
    total_deletions: int
    audit_head: AuditAnchor | None = None
