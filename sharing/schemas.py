"""Request and response bodies of the sharing routes."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

# The enums other packages need are part of the public schema (models stay private).
from sharing.models import AgreementStatus as AgreementStatus
from sharing.models import ShareScope as ShareScope
from vms.core.schemas import StrictModel

Effective = Literal["draft", "scheduled", "active", "expired", "revoked"]


class Contact(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(None, max_length=50)


class AgreementCreate(StrictModel):
    owner_organisation_id: int | None = Field(
        None, description="the organisation that shares its cameras; defaults to your own"
    )
    recipient_organisation_id: int
    title: str = Field(min_length=1, max_length=200)
    purpose: str = Field(min_length=1, max_length=10_000)
    legal_ground: str = Field(
        min_length=1,
        max_length=10_000,
        description="why the disclosure is lawful (e.g. GDPR art. 6.1 e with the statute)",
    )
    scope: ShareScope = ShareScope.live
    camera_ids: list[int] = Field(default_factory=list, max_length=1000)
    site_id: int | None = Field(None, description="a camera group: every camera of this site")
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = Field(None, description="required to put it in force")
    owner_contact: Contact | None = None
    recipient_contact: Contact | None = None


class AgreementUpdate(StrictModel):
    """Only drafts change; an agreement in force is ended and replaced instead."""

    recipient_organisation_id: int | None = None
    title: str | None = Field(None, min_length=1, max_length=200)
    purpose: str | None = Field(None, min_length=1, max_length=10_000)
    legal_ground: str | None = Field(None, min_length=1, max_length=10_000)
    scope: ShareScope | None = None
    camera_ids: list[int] | None = Field(None, max_length=1000)
    site_id: int | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    owner_contact: Contact | None = None
    recipient_contact: Contact | None = None


class AgreementStatusChange(StrictModel):
    status: Literal["in_force", "expired", "revoked"]
    reason: str | None = Field(None, max_length=2000, description="required when revoking")


class DocumentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    agreement_id: int
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_at: dt.datetime
    uploaded_by: int | None


class ContactRead(BaseModel):
    name: str | None
    email: str | None
    phone: str | None


class AgreementRead(BaseModel):
    id: int
    owner_organisation_id: int
    owner: str
    recipient_organisation_id: int
    recipient: str
    title: str
    purpose: str
    legal_ground: str
    scope: ShareScope
    camera_ids: list[int]
    site_id: int | None
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    owner_contact: ContactRead
    recipient_contact: ContactRead
    status: AgreementStatus
    effective: Effective = Field(description="status with the validity window applied, now")
    in_force_now: bool
    created_by: int | None
    in_force_at: dt.datetime | None
    in_force_by: int | None
    ended_at: dt.datetime | None
    ended_by: int | None
    end_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    documents: list[DocumentRead] = []


class SharedVia(BaseModel):
    agreement_id: int
    scope: ShareScope
    valid_until: dt.datetime | None


class SharedCameraRead(BaseModel):
    """A camera another organisation shares with yours: what it is, never how to reach it."""

    camera_id: int
    name: str
    owner_organisation_id: int
    owner: str
    address: str | None
    lat: float | None
    lon: float | None
    direction_deg: float | None
    purpose: str
    mode: str
    live_now: bool = Field(description="the owner's policy allows live view right now")
    reasons: list[str]
    recordings_shared: bool
    agreements: list[SharedVia]


class StreamSessionRead(BaseModel):
    """Credentials for one camera's relayed stream: shown once, valid for this session only."""

    id: int
    camera_id: int
    agreement_id: int
    protocol: Literal["rtsp"]
    url: str = Field(description="rtsp://host:port/share/<session>, without credentials")
    username: str
    password: str | None = Field(description="digest password; only in the answer that opens it")
    started_at: dt.datetime
    expires_at: dt.datetime
    recheck_s: float = Field(description="rights re-checked this often; revocation ends it then")
    idle_timeout_s: float
    codec: str = "H.264 (masked), RTP over RTSP (TCP interleaved or UDP)"
    ended_at: dt.datetime | None = None
    ended_by: str | None = None


class SessionRow(BaseModel):
    id: int
    camera_id: int
    user_id: int
    user_email: str
    protocol: str
    started_at: dt.datetime
    first_play_at: dt.datetime | None
    ended_at: dt.datetime | None
    ended_by: str | None
    viewed_seconds: float


class ViewerTotal(BaseModel):
    user_id: int
    user_email: str
    sessions: int
    hours_viewed: float


class CameraTotal(BaseModel):
    camera_id: int
    sessions: int
    hours_viewed: float


class AgreementReport(BaseModel):
    """What the owner's DPO reads about one agreement: every session, hours viewed, by whom."""

    generated_at: dt.datetime
    agreement: AgreementRead
    sessions: int
    open_sessions: int
    hours_viewed: float
    by_user: list[ViewerTotal]
    by_camera: list[CameraTotal]
    items: list[SessionRow]
