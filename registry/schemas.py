"""Request and response bodies of the registry routes.

Credentials are write-only: request models accept `username`/`password` (or a URL with
`user:password@`), responses only say `has_credentials`.

Over 500 lines on purpose (barely): one model per route body of the camera registry, kept
together so that the write-only credential rule is visible for every source kind at once.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from permits.policy import DAYS

# The enums other packages need are part of the registry's public schema (models stay private).
from registry.models import CameraMode as CameraMode
from registry.models import CameraStatus as CameraStatus
from registry.models import PassthroughStatus as PassthroughStatus
from registry.models import RecordingPath as RecordingPath
from registry.models import SourceKind as SourceKind
from vms.core.schemas import StrictModel

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.\-]{0,253}[A-Za-z0-9])?)$")
MAX_RETENTION_HOURS = 24 * 366


class PurposeCategory(enum.StrEnum):
    crime_prevention = "crime_prevention"
    property_protection = "property_protection"
    traffic_management = "traffic_management"
    care_supervision = "care_supervision"
    safety = "safety"
    other = "other"


class PermitStatus(enum.StrEnum):
    ok = "ok"
    missing = "missing"
    draft = "draft"
    expiring = "expiring"
    expired = "expired"
    revoked = "revoked"
    conflict = "conflict"


# --- parts ---------------------------------------------------------------------------------


class OwnerContact(StrictModel):
    name: str | None = Field(None, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(None, max_length=50)

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\+?[0-9][0-9 ()\-]{2,48}", v):
            raise ValueError(
                "must be a phone number: digits, spaces, ()- and an optional leading +"
            )
        return v


class Location(StrictModel):
    address: str | None = Field(None, max_length=300)
    lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False, description="WGS84")
    lon: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False, description="WGS84")
    mount_height_m: float | None = Field(None, ge=0, le=500, allow_inf_nan=False)
    direction_deg: float | None = Field(
        None, ge=0, lt=360, allow_inf_nan=False, description="compass bearing, 0 = north"
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> Location:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        return self


class ScheduleWindow(StrictModel):
    """Days and local clock times [start, end); an end before the start runs past midnight,
    start == end means 24 hours from start."""

    days: list[Day] = Field(min_length=1, max_length=7)
    start: str = Field(description="HH:MM, local time")
    end: str = Field(description="HH:MM, local time")

    @field_validator("days")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("days must not repeat")
        return sorted(v, key=DAYS.index)

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, v: str) -> str:
        if not _HHMM.fullmatch(v):
            raise ValueError("must be a time HH:MM between 00:00 and 23:59")
        return v


class Signage(StrictModel):
    posted: bool = False
    text: str | None = Field(None, max_length=2000)


class _Credentials(StrictModel):
    # repr=False: a request model printed in a traceback or a debug log shows no secret.
    username: str | None = Field(None, min_length=1, max_length=200, repr=False)
    password: SecretStr | None = Field(None, min_length=1, max_length=500, repr=False)


class RtspSource(_Credentials):
    kind: Literal["rtsp"]
    url: str = Field(
        min_length=8,
        max_length=1000,
        repr=False,
        description="rtsp:// or rtsps:// URL; user:password@ in it is split off and encrypted",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        # Messages never quote the URL: it may carry a password.
        try:
            parts = urlsplit(v)
            _ = parts.port
        except ValueError as exc:
            raise ValueError("is not a valid URL (check the host and port)") from exc
        if parts.scheme not in ("rtsp", "rtsps"):
            raise ValueError("must be an rtsp:// or rtsps:// URL")
        if not parts.hostname:
            raise ValueError("must name a host")
        if parts.port == 0:
            raise ValueError("port must be between 1 and 65535")
        if any(c.isspace() for c in v):
            raise ValueError("must not contain whitespace")
        return v

    @model_validator(mode="after")
    def _one_place_for_credentials(self) -> RtspSource:
        parts = urlsplit(self.url)
        if (parts.username or parts.password) and (self.username or self.password):
            raise ValueError("give credentials either in the URL or as username/password, not both")
        return self


class OnvifSource(_Credentials):
    kind: Literal["onvif"]
    host: str = Field(min_length=1, max_length=255, description="host name or IP address")
    port: int = Field(80, ge=1, le=65535)
    profile_token: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="the profile recorded (default: the highest-resolution H.264 profile)",
    )
    live_profile_token: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="the profile live view shows, e.g. the camera's substream (read only while "
        "someone watches, masked by vms like the main stream); default: the recorded profile",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not _HOST.fullmatch(v):
            raise ValueError("must be a host name or IP address (no scheme, port, path or user)")
        return v


class FileSource(StrictModel):
    kind: Literal["file"]
    path: str = Field(
        min_length=1,
        max_length=1000,
        description="a video file under the sample-media or import directory "
        "(VMS_SAMPLE_MEDIA_DIR, VMS_IMPORT_DIR; never the data directory)",
    )


SourceIn = Annotated[RtspSource | OnvifSource | FileSource, Field(discriminator="kind")]


def _check_timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone: use an IANA name such as Europe/Stockholm") from exc
    return v


# --- cameras -------------------------------------------------------------------------------


RECORD_FPS = Field(
    None,
    gt=0,
    le=60,
    allow_inf_nan=False,
    description="record this many frames per second (e.g. 10 of a 25 fps stream); null: all",
)
RECORD_HEIGHT = Field(
    None, ge=144, le=4320, description="record scaled down to this many lines; null: as streamed"
)
RECORDING_PATH_DOC = (
    "transcode: vms decodes, masks and encodes (any plan). passthrough: the camera draws the "
    "plan's masks (ONVIF Media2) and its H.264 is recorded as it comes, keyframes checked; "
    "ONVIF cameras with a static plan (no detectors) that record"
)


class CameraCreate(StrictModel):
    organisation_id: int | None = Field(
        None, description="defaults to your own organisation (admin: any)"
    )
    site_id: int | None = None
    name: str = Field(min_length=1, max_length=200)
    owner_contact: OwnerContact = Field(default_factory=OwnerContact)
    location: Location = Field(default_factory=Location)
    purpose: str = Field(min_length=1, max_length=5000)
    purpose_category: PurposeCategory
    mode: CameraMode
    retention_hours: int = Field(ge=0, le=MAX_RETENTION_HOURS)
    legal_basis_id: int | None = None
    source: SourceIn
    timezone: str = Field("Europe/Stockholm", max_length=64)
    schedule: list[ScheduleWindow] = Field(default_factory=list, max_length=64)
    signage: Signage = Field(default_factory=Signage)
    mask_plan: dict[str, Any] | None = Field(None, description="see the masking documentation")
    status: Literal["active", "paused"] = "active"
    record_fps: float | None = RECORD_FPS
    record_height: int | None = RECORD_HEIGHT
    recording_path: RecordingPath = Field(RecordingPath.transcode, description=RECORDING_PATH_DOC)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _check_timezone(v)


class CameraUpdate(StrictModel):
    site_id: int | None = None
    name: str | None = Field(None, min_length=1, max_length=200)
    owner_contact: OwnerContact | None = None
    location: Location | None = None
    purpose: str | None = Field(None, min_length=1, max_length=5000)
    purpose_category: PurposeCategory | None = None
    mode: CameraMode | None = None
    retention_hours: int | None = Field(None, ge=0, le=MAX_RETENTION_HOURS)
    legal_basis_id: int | None = None
    source: SourceIn | None = Field(
        None,
        description="replaces the source; credentials omitted on the same kind are kept, "
        "an explicit null username/password clears them",
    )
    timezone: str | None = Field(None, max_length=64)
    schedule: list[ScheduleWindow] | None = Field(None, max_length=64)
    signage: Signage | None = None
    mask_plan: dict[str, Any] | None = None
    status: Literal["active", "paused"] | None = Field(None, description="decommission with DELETE")
    record_fps: float | None = RECORD_FPS
    record_height: int | None = RECORD_HEIGHT
    recording_path: RecordingPath | None = Field(None, description=RECORDING_PATH_DOC)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_timezone(v)


class SourceRead(BaseModel):
    kind: SourceKind
    url: str | None = Field(None, description="without credentials")
    host: str | None = None
    port: int | None = None
    profile_token: str | None = None
    live_profile_token: str | None = None
    path: str | None = None
    has_credentials: bool


class ConflictRead(BaseModel):
    field: str
    msg: str


class CameraRead(BaseModel):
    id: int
    organisation_id: int
    site_id: int | None
    name: str
    owner_contact: OwnerContact
    location: Location
    purpose: str
    purpose_category: str
    mode: CameraMode
    retention_hours: int
    legal_basis_id: int | None
    permit_status: PermitStatus
    conflicts: list[ConflictRead]
    source: SourceRead
    timezone: str
    schedule: list[ScheduleWindow]
    signage: Signage
    mask_plan: dict[str, Any] | None
    mask_plan_hash: str | None
    record_fps: float | None = None
    record_height: int | None = None
    recording_path: RecordingPath = RecordingPath.transcode
    passthrough: PassthroughRead | None = Field(
        None, description="passthrough cameras: where verification stands"
    )
    status: CameraStatus
    retention_kept_before: dt.datetime | None = Field(
        None, description="retention was shortened: footage that ended before this keeps..."
    )
    retention_kept_hours: int | None = Field(
        None, description="...this retention until a DPO or admin confirms the purge"
    )
    decommissioned_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class PassthroughRead(BaseModel):
    """A passthrough camera's verification, as its worker last wrote it."""

    status: PassthroughStatus | None = Field(
        None, description="null: the camera has not run in passthrough yet"
    )
    plan_hash: str | None = None
    verified_since: dt.datetime | None = None
    last_verified_at: dt.datetime | None = None
    checks_passed: int = 0
    failed_at: dt.datetime | None = None
    reason: str | None = None
    detail: str | None = None


class PolicyRead(BaseModel):
    camera_id: int
    at: dt.datetime
    may_view_live: bool
    may_record: bool
    max_retention_hours: int
    masking_required: bool
    active_now: bool
    reasons: list[str]
    basis_id: int | None


# --- sites ---------------------------------------------------------------------------------


class SiteCreate(StrictModel):
    organisation_id: int | None = Field(
        None, description="defaults to your own organisation (admin: any)"
    )
    name: str = Field(min_length=1, max_length=200)
    address: str | None = Field(None, max_length=300)


class SiteUpdate(StrictModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    address: str | None = Field(None, max_length=300)


class SiteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    organisation_id: int
    name: str
    address: str | None
    created_at: dt.datetime


# --- DPO views -----------------------------------------------------------------------------


class RegisterEntry(BaseModel):
    """One row of the register (förteckning) and GDPR Art. 30 record; also the CSV columns."""

    camera_id: int
    camera_name: str
    status: CameraStatus
    registered_at: dt.datetime
    decommissioned_at: dt.datetime | None
    keep_until: dt.date | None = Field(description="decommissioned + 5 years")
    organisation_id: int
    controller: str
    controller_org_number: str | None
    contact_name: str | None
    contact_email: str | None
    contact_phone: str | None
    site: str | None
    address: str | None
    lat: float | None
    lon: float | None
    mount_height_m: float | None
    direction_deg: float | None
    purpose: str
    purpose_category: str
    data_subject_categories: str
    personal_data_categories: str
    recipients: str
    third_country_transfers: str
    mode: CameraMode
    active_hours: str
    retention_hours: int = Field(description="what is actually kept: min of camera and basis")
    requested_retention_hours: int
    retention_justification: str | None
    masking_required: bool
    mask_plan_hash: str | None
    signage_posted: bool
    signage_text: str | None
    security_measures: str
    legal_basis_id: int | None
    legal_basis_kind: str | None
    legal_basis_title: str | None
    legal_basis_status: str | None
    legal_basis_reference: str | None = Field(description="permit case number or who decided")
    legal_basis_decided: dt.date | None
    legal_basis_valid_until: dt.datetime | None
    legal_basis_review_by: dt.date | None
    permit_status: PermitStatus


class RegisterRead(BaseModel):
    generated_at: dt.datetime
    organisation_ids: list[int]
    entries: list[RegisterEntry]


class ComplianceItem(BaseModel):
    camera_id: int
    camera_name: str
    organisation_id: int
    code: str
    msg: str
    field: str | None = None


class PassthroughCamera(BaseModel):
    """A camera set to record passthrough: whether its masks are verified, and since when."""

    camera_id: int
    camera_name: str
    organisation_id: int
    verification: PassthroughRead


class ComplianceReport(BaseModel):
    generated_at: dt.datetime
    organisation_ids: list[int]
    cameras_checked: int
    counts: dict[str, int]
    items: list[ComplianceItem]
    passthrough: list[PassthroughCamera] = Field(
        default_factory=list,
        description="cameras recording the camera's own masked stream: status, verified "
        "since, last verification (written at most every 30 s), failures",
    )


class GeoPoint(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float] = Field(description="[lon, lat], WGS84")


class GeoProperties(BaseModel):
    id: int
    name: str
    owner: str
    organisation_id: int
    purpose: str
    purpose_category: str
    mode: CameraMode
    retention_hours: int
    address: str | None
    direction_deg: float | None
    signage_posted: bool


class GeoFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: GeoPoint
    properties: GeoProperties


class GeoFeatureCollection(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[GeoFeature]


class ImportResult(BaseModel):
    dry_run: bool
    rows: int
    created: int
    sites_created: int
    camera_ids: list[int]
