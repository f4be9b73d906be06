"""Request and response bodies of the pipeline routes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from vms.core.pagination import PageParams
from vms.pipeline.status import CameraState, RecordingState


class Resolution(BaseModel):
    width: int
    height: int


class CameraStatusRead(BaseModel):
    camera_id: int
    state: CameraState = Field(
        description="starting | streaming | reconnecting | stalled | blocked | stopped"
    )
    reasons: list[str] = Field(description="why the policy withholds live view or recording")
    may_view_live: bool
    may_record: bool
    recording: RecordingState
    resolution: Resolution | None
    input_fps: float
    output_fps: float
    frames_in: int = Field(description="frames decoded from the source")
    frames_out: int = Field(description="masked frames delivered to live view and recording")
    dropped_frames: int
    reconnects: int
    restarts: int = Field(description="worker processes restarted after a crash or a hang")
    segments_written: int
    mask_fail_closed: int = Field(description="frames fully anonymised because masking failed")
    live_viewers: int
    live_stream: Literal["main", "substream"] | None = Field(
        None,
        description="what live viewers see: the recorded profile (main) or the camera's live "
        "profile (substream); null while nobody watches",
    )
    last_frame_at: dt.datetime | None
    last_error: str | None = Field(description="credentials are removed from this text")
    updated_at: dt.datetime | None
    node: str | None = Field(
        None, description="the Ray node that runs the camera (null: the server itself)"
    )
    recording_path: str = Field(
        "transcode",
        description="how the worker records now: transcode, or passthrough (the camera's "
        "masks, checked on keyframes)",
    )
    passthrough: PassthroughStatusRead | None = Field(
        None, description="passthrough cameras: the checks of this run of the pipeline"
    )


class PassthroughStatusRead(BaseModel):
    verified_at: dt.datetime | None = Field(description="the last keyframe that passed the check")
    checks: int = Field(description="frames checked and passed")
    failed: str | None = Field(description="why passthrough stopped (then: transcode or blocked)")
    quarantined_segments: int = Field(
        description="segments no passing check covers: kept, not played or exported until "
        "re-masked (vms footage remask)"
    )


class LiveTicketRead(BaseModel):
    ticket: str
    live_url: str = Field(description="MJPEG for an <img src>; no Authorization header needed")
    snapshot_url: str
    expires_at: dt.datetime = Field(description="start the view before this; it then runs on")


class OnvifProbeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.\-:\[\]_]+$")
    port: int = Field(80, ge=1, le=65535)
    username: str = Field("", max_length=200)
    password: SecretStr = Field(SecretStr(""), max_length=200)


class OnvifDeviceRead(BaseModel):
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware_id: str


class OnvifProfileRead(BaseModel):
    token: str
    name: str
    encoding: str | None
    width: int | None
    height: int | None
    fps: float | None
    stream_uri: str | None = Field(description="without credentials")
    snapshot_uri: str | None = Field(description="without credentials")


class OnvifProbeRead(BaseModel):
    host: str
    port: int
    device: OnvifDeviceRead
    profiles: list[OnvifProfileRead]
    recommended_profile_token: str | None = Field(
        description="the highest-resolution H.264 profile: what the pipeline picks by default"
    )
    recommended_live_profile_token: str | None = Field(
        None,
        description="a smaller H.264 profile (a substream) for live view, if the device has one: "
        "the smallest of at least 360 lines, else the largest below the recorded one",
    )


class SegmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    camera_id: int
    start: dt.datetime
    end: dt.datetime
    size_bytes: int
    sha256: str
    mask_plan_hash: str | None
    codec: str
    width: int
    height: int
    frames: int


class GapRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    camera_id: int
    start: dt.datetime
    end: dt.datetime | None = Field(description="null while footage is still missing")
    reason: str = Field(
        description="policy | camera_down | disk_full | recording_error | worker_crashed | "
        "pipeline_stopped"
    )
    detail: str | None


class RecordingsRead(BaseModel):
    camera_id: int
    start: dt.datetime
    end: dt.datetime
    segments: list[SegmentRead]
    gaps: list[GapRead]
    total: int = Field(description="segments in the range (the page is `limit`/`offset`)")
    limit: int
    offset: int

    @classmethod
    def page_of(
        cls,
        camera_id: int,
        found: tuple[dt.datetime, dt.datetime, Sequence[Any], Sequence[Any], int],
        page: PageParams,
    ) -> RecordingsRead:
        """From what the recordings services return: (start, end, segments, gaps, total)."""
        start, end, segments, gaps, total = found
        return cls(
            camera_id=camera_id,
            start=start,
            end=end,
            segments=[SegmentRead.model_validate(s) for s in segments],
            gaps=[GapRead.model_validate(g) for g in gaps],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )


class MaskPreviewRequest(BaseModel):
    """An unsaved mask plan to try on the camera's current picture (the plan editor)."""

    model_config = ConfigDict(extra="forbid")

    plan: dict[str, Any] | None = Field(
        None, description="a mask plan (see the masking documentation); null: no masking"
    )
    apply: bool = Field(True, description="anonymise the picture with the plan")
    overlay: bool = Field(True, description="draw the zones, facade lines and calibration points")
