"""When footage that should exist does not: pure decisions about recording gaps.

The supervisor observes each camera once per tick and a `GapTracker` turns the observations into
"open a gap (from, reason)" / "close the gap (at)" actions, which the supervisor writes through
`retention.service.open_gap/close_gap`. A gap starts where the last indexed segment ended (when
the worker told us) and ends where the next segment starts, so segments and gaps tile time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from vms.pipeline.config import PolicyFlags
from vms.pipeline.status import CameraState, RecordingState

# Reasons written to the index (retention.models.Gap.reason).
POLICY = "policy"  # the legal basis/mode/schedule does not allow recording now
CAMERA_DOWN = "camera_down"  # the source cannot be reached or stopped sending
DISK_FULL = "disk_full"
RECORDING_ERROR = "recording_error"
WORKER_CRASHED = "worker_crashed"
PIPELINE_STOPPED = "pipeline_stopped"
# Passthrough: no keyframe has passed the mask check yet, or a check failed (the camera is
# restarting on the transcode path; what no check covered is quarantined, not playable).
PASSTHROUGH_VERIFYING = "passthrough_verifying"
PASSTHROUGH_FAILED = "passthrough_failed"


@dataclass(frozen=True, slots=True)
class Observation:
    expects_recording: bool  # the camera's mode records (and it is not decommissioned)
    recording: bool  # a segment is being written right now
    reason: str | None  # why not, if known; None = no new opinion (keep what is open)
    detail: str | None = None
    recorded_until: dt.datetime | None = None
    recording_since: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class OpenGap:
    start: dt.datetime
    reason: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class CloseGap:
    end: dt.datetime


GapAction = OpenGap | CloseGap


def not_recording_reason(
    *,
    policy: PolicyFlags | None,
    state: CameraState,
    recording: RecordingState,
    worker_alive: bool,
    crashed: bool,
    last_error: str | None,
    passthrough_failed: str | None = None,
) -> tuple[str | None, str | None]:
    """Why a camera that should record does not, as (reason, detail); (None, None) when there
    is nothing new to say (e.g. a worker still starting)."""
    if policy is not None and not policy.may_record:
        return POLICY, "; ".join(policy.reasons) or None
    if passthrough_failed is not None:
        return PASSTHROUGH_FAILED, passthrough_failed
    if recording is RecordingState.verifying:
        return PASSTHROUGH_VERIFYING, last_error
    if crashed or (not worker_alive and state is not CameraState.stopped):
        return WORKER_CRASHED, last_error
    if recording is RecordingState.disk_full:
        return DISK_FULL, last_error
    if recording is RecordingState.error:
        return RECORDING_ERROR, last_error
    if state in (CameraState.reconnecting, CameraState.stalled):
        return CAMERA_DOWN, last_error
    if state is CameraState.stopped:
        return PIPELINE_STOPPED, last_error
    return None, None


class GapTracker:
    """One camera's open gap, as far as this supervisor has written it."""

    def __init__(self) -> None:
        self.open_reason: str | None = None
        self.open_detail: str | None = None

    def step(self, obs: Observation, now: dt.datetime) -> list[GapAction]:
        if not obs.expects_recording:
            # A live-only camera owes no footage: whatever gap was open ends here.
            return self._close(now) if self.open_reason is not None else []
        if obs.recording:
            if self.open_reason is None:
                return []
            end = obs.recording_since or now
            return self._close(min(end, now))
        if obs.reason is None or (
            obs.reason == self.open_reason and obs.detail == self.open_detail
        ):
            return []
        start = now
        if (
            self.open_reason is None
            and obs.recorded_until is not None
            and obs.recorded_until <= now
        ):
            start = obs.recorded_until
        self.open_reason, self.open_detail = obs.reason, obs.detail
        return [OpenGap(start, obs.reason, obs.detail)]

    def _close(self, at: dt.datetime) -> list[GapAction]:
        self.open_reason = self.open_detail = None
        return [CloseGap(at)]
