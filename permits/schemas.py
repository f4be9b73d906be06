"""Request and response bodies of the legal-basis routes."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# The enums other packages need are part of the public schema (models stay private).
from permits.models import BasisKind as BasisKind
from permits.models import BasisStatus as BasisStatus
from vms.core.schemas import StrictModel

Text = Field(None, max_length=10_000)


class _BasisFields(StrictModel):
    """What every kind of basis may carry; which ones are required depends on kind and status."""

    purpose: str | None = Text
    less_intrusive_measures: str | None = Field(
        None, max_length=10_000, description="why less intrusive measures are insufficient"
    )
    covered_area: str | None = Text
    active_hours: str | None = Text
    privacy_measures: str | None = Field(
        None, max_length=10_000, description="e.g. masking, live view only"
    )
    retention_justification: str | None = Field(
        None, max_length=10_000, description="required when max_retention_hours is above 72"
    )
    decided_by: str | None = Field(None, max_length=200)
    decided_at: AwareDatetime | None = None
    review_by: dt.date | None = None
    authority: str | None = Field(None, max_length=200, description="permit: e.g. IMY")
    case_number: str | None = Field(None, max_length=64, description="permit: diarienummer")
    decision_date: dt.date | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    conditions: str | None = Text
    not_required_reason: str | None = Field(
        None, max_length=10_000, description="not_required: e.g. not accessible to the public"
    )


class LegalBasisCreate(_BasisFields):
    organisation_id: int | None = Field(
        None, description="defaults to your own organisation; admin and DPOs may name another"
    )
    kind: BasisKind
    status: Literal["draft", "in_force"] = "draft"
    title: str = Field(min_length=1, max_length=200)
    max_retention_hours: int = Field(72, ge=0, le=24 * 366)
    live_view_allowed: bool = False
    recording_allowed: bool = False
    masking_required: bool = True


class LegalBasisUpdate(_BasisFields):
    title: str | None = Field(None, min_length=1, max_length=200)
    max_retention_hours: int | None = Field(None, ge=0, le=24 * 366)
    live_view_allowed: bool | None = None
    recording_allowed: bool | None = None
    masking_required: bool | None = None


class StatusChange(StrictModel):
    status: Literal["in_force", "expired", "revoked"]
    reason: str | None = Field(None, max_length=2000, description="required when revoking")


class DocumentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    legal_basis_id: int
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_at: dt.datetime
    uploaded_by: int | None


class LegalBasisRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    organisation_id: int
    kind: BasisKind
    status: BasisStatus
    in_force_now: bool = Field(description="status in_force and within valid_from/valid_until")
    title: str
    purpose: str | None
    less_intrusive_measures: str | None
    covered_area: str | None
    active_hours: str | None
    privacy_measures: str | None
    max_retention_hours: int
    retention_justification: str | None
    live_view_allowed: bool
    recording_allowed: bool
    masking_required: bool
    decided_by: str | None
    decided_at: dt.datetime | None
    review_by: dt.date | None
    authority: str | None
    case_number: str | None
    decision_date: dt.date | None
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    conditions: str | None
    not_required_reason: str | None
    revoked_at: dt.datetime | None
    revoked_reason: str | None
    surveillance_ended_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    documents: list[DocumentRead] = []
