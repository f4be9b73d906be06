"""What a camera worker is told: frozen, picklable, and free of anything global.

A worker gets one `WorkerConfig` through its constructor (it crosses a process boundary, so it
holds plain values only) and never reads settings or the registry itself. Secrets (stream URL
with credentials, ONVIF password, database URL) are excluded from `repr`, so a config can be
logged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from vms.core.crypto import scrub

SourceKind = Literal["rtsp", "onvif", "file"]
Mode = Literal["live", "recording", "live_and_recording"]
RecordingPath = Literal["transcode", "passthrough"]

# A plan that anonymises every pixel: what a camera gets when masking is required but it has no
# plan (yet). Failing closed here means a newly registered camera shows nothing identifiable.
ANONYMISE_ALL: dict[str, Any] = {"version": 1, "default": "anonymise"}


@dataclass(frozen=True, slots=True)
class PolicyFlags:
    """The part of `permits.policy.Policy` a worker acts on; pushed to running workers."""

    may_view_live: bool
    may_record: bool
    reasons: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        return not (self.may_view_live or self.may_record)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where frames come from. `url` is the decoder's URL (credentials included) or a file."""

    kind: SourceKind
    url: str | None = field(default=None, repr=False)
    onvif_host: str | None = None
    onvif_port: int | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    profile_token: str | None = None
    # ONVIF: the profile live view reads while someone watches (a substream); None: the main one.
    live_profile_token: str | None = None
    # File sources play like a camera: paced to their frame rate, looping (demo cameras).
    realtime: bool = True
    loop: bool = True
    # The networks the source host must resolve into (CIDRs; empty: no fence, tests only) and
    # the extra hosts an ONVIF device may hand out stream URIs on.
    networks: tuple[str, ...] = ()
    stream_hosts: tuple[str, ...] = ()

    def describe(self) -> str:
        """A credential-free description for logs and status."""
        if self.kind == "onvif":
            return f"onvif://{self.onvif_host}:{self.onvif_port}"
        return scrub(self.url or "")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    camera_id: int
    organisation_id: int
    mode: Mode
    source: SourceSpec
    mask_plan: dict[str, Any] | None
    mask_plan_hash: str | None
    policy: PolicyFlags
    data_dir: str
    db_url: str = field(repr=False)
    segment_seconds: float = 10.0
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    stall_seconds: float = 10.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    jpeg_quality: int = 80
    live_fps: float = 10.0
    models_dir: str | None = None
    encoder_preset: str = "ultrafast"
    encoder_crf: int = 23
    # One encoder and one decoder thread per camera: cameras, not threads, fill the cores, and
    # per-camera CPU stays measurable.
    encoder_threads: int = 1
    decoder_threads: int = 1
    # The recording profile: record every frame at the source's size unless set (e.g. a 1080p
    # main stream recorded at 10 fps, or scaled down to 720 lines).
    record_fps: float | None = None
    record_height: int | None = None
    # After a disk-full error, how long before the recorder tries again.
    disk_full_retry_s: float = 30.0
    status_interval_s: float = 1.0
    # Decoded frames waiting for the mask/encode thread; more are dropped (and counted). Every
    # camera of a shared source gets its frames at the same instant, so work arrives in bursts:
    # a short queue drops frames a moment later would have caught up with.
    frame_queue: int = 8
    # Passthrough: the camera draws the plan's masks and its stream is recorded as it comes,
    # keyframes checked at least every `passthrough_verify_s` (see vms.pipeline.passthrough).
    recording_path: RecordingPath = "transcode"
    passthrough_verify_s: float = 2.0
    passthrough_settle_s: float = 10.0
    # Frames the main thread takes at once while nobody watches live (see vms.pipeline.frames):
    # back-to-back masking and encoding costs less CPU than frame by frame after idle gaps.
    frame_batch: int = 1
    # Issue 14: the RTSP relay's ingest socket (None: no relay) and its keyframe interval.
    relay_socket: str | None = None
    relay_gop_frames: int = 25

    @property
    def records(self) -> bool:
        """Whether this camera has a write path at all (a live-only camera has none)."""
        return self.mode != "live"

    def restart_key(self) -> WorkerConfig:
        """Everything except the policy flags: a change here needs a fresh worker; a change in
        the flags alone is pushed to the running one."""
        return dataclasses.replace(self, policy=PolicyFlags(False, False))

    def with_policy(self, policy: PolicyFlags) -> WorkerConfig:
        return dataclasses.replace(self, policy=policy)
