"""Camera states and the status a worker reports to the supervisor."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from vms.core.crypto import scrub


class CameraState(enum.StrEnum):
    starting = "starting"  # worker launched, first frame not yet decoded
    streaming = "streaming"  # frames arrive
    reconnecting = "reconnecting"  # the source failed; retrying with backoff
    stalled = "stalled"  # connected (or connecting) but no frame for too long
    blocked = "blocked"  # policy allows neither live view nor recording: nothing runs
    stopped = "stopped"  # not running (pipeline off, camera removed, restart budget spent)


class RecordingState(enum.StrEnum):
    off = "off"  # live-only camera, or not allowed now
    recording = "recording"  # a segment is open
    waiting = "waiting"  # allowed, but no frames to record
    disk_full = "disk_full"  # stopped after ENOSPC; retried later
    error = "error"  # stopped after another write error; retried later
    # Passthrough: allowed, but no keyframe has passed the mask check on this connection yet.
    verifying = "verifying"


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One report from a worker. Sent over a multiprocessing queue, so plain values only."""

    camera_id: int
    pid: int
    state: CameraState
    recording: RecordingState = RecordingState.off
    width: int | None = None
    height: int | None = None
    input_fps: float = 0.0
    output_fps: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    dropped_frames: int = 0
    reconnects: int = 0
    segments_written: int = 0
    mask_fail_closed: int = 0
    last_frame_at: dt.datetime | None = None
    last_error: str | None = None
    # End of the last segment committed to the index, and start of the current recording run:
    # the supervisor bounds recording gaps with these.
    recorded_until: dt.datetime | None = None
    recording_since: dt.datetime | None = None
    # How this worker records ("transcode" or "passthrough") and, in passthrough, its checks.
    recording_path: str = "transcode"
    passthrough_verified_at: dt.datetime | None = None
    passthrough_checks: int = 0
    passthrough_failed: str | None = None  # the failed check's or device's reason
    quarantined_segments: int = 0
    # Which stream live viewers see: "main", "substream" (a live profile), None: no viewer.
    live_stream: str | None = None
    sent_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def clean_error(text: str | None, limit: int = 500) -> str | None:
    """An error text safe to store and show: URL credentials removed, bounded length."""
    if text is None:
        return None
    cleaned = scrub(text).replace("\n", " ").strip()
    return cleaned[:limit] or None
