"""Request and response bodies of the export routes."""

from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from registry.schemas import CameraMode, CameraStatus
from vms.core.schemas import StrictModel
from vms.export.models import ExportStatus, LegalGroundCategory

MAX_CAMERAS = 50


class LegalGround(StrictModel):
    category: LegalGroundCategory
    text: str = Field(min_length=1, max_length=2000, description="e.g. the provision relied on")


class ExportCreate(StrictModel):
    case_number: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ./:_-]*$",
        description="the police case number (diarienummer), e.g. 5000-K123456-25",
    )
    legal_ground: LegalGround
    officer: str = Field(min_length=1, max_length=200, description="requesting officer")
    unit: str = Field(min_length=1, max_length=200, description="the officer's unit")
    camera_ids: list[int] = Field(min_length=1, max_length=MAX_CAMERAS)
    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(min_length=1, max_length=4000)

    @field_validator("camera_ids")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("camera ids must not repeat")
        if any(i < 1 for i in v):
            raise ValueError("camera ids are positive integers")
        return v

    @field_validator("case_number", "officer", "unit", "reason")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class ApproveBody(StrictModel):
    note: str | None = Field(None, max_length=2000)


class RejectBody(StrictModel):
    reason: str = Field(min_length=1, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class CloseBody(StrictModel):
    keep_hold: bool = Field(
        False, description="keep the legal hold on the footage after closing (police ask)"
    )
    reason: str | None = Field(None, max_length=2000)


class WithheldRead(BaseModel):
    camera_id: int
    segments: int
    seconds: float
    reason: str = Field(
        description="quarantined: recorded as the camera masked it (passthrough) and not "
        "covered by a passing mask check; not exported until re-masked"
    )


class ExportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: ExportStatus
    progress: int = Field(description="build progress in percent")
    case_number: str
    legal_ground: LegalGround
    officer: str
    unit: str
    reason: str
    camera_ids: list[int]
    start: dt.datetime
    end: dt.datetime
    requester_id: int
    requester_organisation_id: int
    organisation_id: int = Field(description="the organisation owning the cameras (approves)")
    hold_id: int | None
    keep_hold: bool
    decided_by: int | None
    decided_at: dt.datetime | None
    decision_note: str | None
    failure_reason: str | None
    built_at: dt.datetime | None
    package_sha256: str | None
    package_size: int | None
    manifest_sha256: str | None
    expires_at: dt.datetime | None = Field(description="when the package will be deleted")
    download_count: int
    last_downloaded_at: dt.datetime | None
    closed_at: dt.datetime | None
    close_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    withheld: list[WithheldRead] = Field(
        default_factory=list,
        description="footage in the range that exists but will not be in the package "
        "(single-request reads)",
    )


class OwnerRead(BaseModel):
    organisation_id: int
    organisation: str
    contact_name: str | None
    contact_email: str | None
    contact_phone: str | None


class FootageRead(BaseModel):
    start: dt.datetime
    end: dt.datetime
    segments: int = Field(description="recorded segments overlapping the range")
    available: bool
    retention_cutoff: dt.datetime = Field(description="footage before this may not be exported")


class CameraNearRead(BaseModel):
    """What police see of a camera in the register: never stream details or credentials."""

    id: int
    name: str
    owner: OwnerRead
    address: str | None
    lat: float
    lon: float
    direction_deg: float | None
    distance_m: float
    purpose: str
    purpose_category: str
    mode: CameraMode
    status: CameraStatus
    retention_hours: int = Field(description="what the camera may keep now (camera and basis)")
    footage: FootageRead | None = Field(None, description="only when start and end are given")


class CameraNearPage(BaseModel):
    items: list[CameraNearRead]
    total: int
    limit: int
    offset: int
