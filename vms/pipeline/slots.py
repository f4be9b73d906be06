"""The supervisor's per-camera state, and the views derived from it: status and the gap
observation. Pure bookkeeping; the supervisor owns the processes and the locking."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from vms.pipeline.config import PolicyFlags, WorkerConfig
from vms.pipeline.desired import DesiredCamera
from vms.pipeline.gaps import GapTracker, Observation, not_recording_reason
from vms.pipeline.live import LiveChannel
from vms.pipeline.restart import Backoff, RestartBudget
from vms.pipeline.status import CameraState, RecordingState, WorkerStatus, clean_error


@dataclass(frozen=True, slots=True)
class CameraStatusView:
    """What `/status` and `/metrics` show for one camera."""

    camera_id: int
    organisation_id: int | None
    state: CameraState
    reasons: tuple[str, ...] = ()
    may_view_live: bool = False
    may_record: bool = False
    recording: RecordingState = RecordingState.off
    width: int | None = None
    height: int | None = None
    input_fps: float = 0.0
    output_fps: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    dropped_frames: int = 0
    reconnects: int = 0
    restarts: int = 0
    segments_written: int = 0
    mask_fail_closed: int = 0
    live_viewers: int = 0
    live_stream: str | None = None  # "main" or "substream" while someone watches
    recording_path: str = "transcode"
    passthrough_verified_at: dt.datetime | None = None
    passthrough_checks: int = 0
    passthrough_failed: str | None = None
    quarantined_segments: int = 0
    last_frame_at: dt.datetime | None = None
    last_error: str | None = None
    pid: int | None = None
    updated_at: dt.datetime | None = None
    node: str | None = None  # the cluster node that runs it (Ray backend); None: this server


@dataclass
class WorkerSlot:
    """One camera as the supervisor keeps it: its live channel (outlives workers), the worker
    process if one runs, restart state, totals across workers, and its open gap."""

    camera_id: int
    organisation_id: int
    live: LiveChannel
    budget: RestartBudget
    backoff: Backoff
    desired: DesiredCamera | None = None
    running: WorkerConfig | None = None
    process: BaseProcess | None = None
    control: Connection | None = None
    stop_event: Any = None
    started_at: float = 0.0
    status: WorkerStatus | None = None
    last_status: WorkerStatus | None = None  # of the previous worker process
    # Counters of previous worker processes, so totals survive restarts.
    base_reconnects: int = 0
    base_dropped: int = 0
    base_frames: int = 0
    base_frames_out: int = 0
    base_segments: int = 0
    base_fail_closed: int = 0
    base_checks: int = 0
    base_quarantined: int = 0
    restarts: int = 0
    crashed: bool = False
    # The worker stopped passthrough: start again only after the registry was read afresh; and
    # why, until a worker records again (the gap says so).
    await_poll: bool = False
    passthrough_stopped: str | None = None
    next_start_at: float = 0.0
    last_error: str | None = None
    gaps: GapTracker = field(default_factory=GapTracker)


@dataclass
class StoppingWorker:
    """A worker asked to stop: it finalises its segment, reports a last time, and exits."""

    camera_id: int
    process: BaseProcess
    control: Connection | None
    deadline: float
    status: WorkerStatus | None
    terminated: bool = False


def retire(slot: WorkerSlot, status: WorkerStatus | None) -> None:
    """Fold a finished worker's counters into the camera's totals."""
    if status is None:
        return
    slot.base_reconnects += status.reconnects
    slot.base_dropped += status.dropped_frames
    slot.base_frames += status.frames_in
    slot.base_frames_out += status.frames_out
    slot.base_segments += status.segments_written
    slot.base_fail_closed += status.mask_fail_closed
    slot.base_checks += status.passthrough_checks
    slot.base_quarantined += status.quarantined_segments
    slot.last_status = status


def observe(slot: WorkerSlot, *, stopping: bool) -> Observation:
    """What the gap tracker needs to know about a camera this tick."""
    want = slot.desired
    expects = want is not None and want.expects_recording
    if stopping:
        # The old worker is still finalising its segment: wait for where footage ends.
        return Observation(expects_recording=expects, recording=False, reason=None)
    status = slot.status
    last = status or slot.last_status
    alive = slot.process is not None
    policy = want.policy if want is not None else None
    state = status.state if status is not None and alive else CameraState.starting
    recording_state = status.recording if status is not None and alive else RecordingState.off
    reason, detail = not_recording_reason(
        policy=policy,
        state=state,
        recording=recording_state,
        worker_alive=alive or not slot.crashed,
        crashed=slot.crashed and not alive,
        last_error=(status.last_error if status is not None else None) or slot.last_error,
        passthrough_failed=(
            slot.passthrough_stopped
            or (last.passthrough_failed if last is not None and not alive else None)
        ),
    )
    return Observation(
        expects_recording=expects,
        recording=alive and recording_state is RecordingState.recording,
        reason=reason,
        detail=detail,
        recorded_until=last.recorded_until if last is not None else None,
        recording_since=status.recording_since if status is not None else None,
    )


def status_view(slot: WorkerSlot) -> CameraStatusView:
    """The camera as `/status` and `/metrics` show it."""
    want = slot.desired
    policy = want.policy if want is not None else PolicyFlags(False, False)
    status = slot.status if slot.process is not None else None
    now_mono = time.monotonic()
    reasons: tuple[str, ...] = ()
    last_error = slot.last_error
    if want is not None and want.config is None:
        state, last_error = CameraState.stopped, want.error
    elif policy.blocked:
        state, reasons = CameraState.blocked, policy.reasons
    elif slot.process is None and slot.crashed:
        if not slot.budget.allowed(now_mono):
            state = CameraState.stopped
            last_error = (
                f"restart budget spent ({slot.budget.limit} restarts in "
                f"{slot.budget.window:.0f}s); next try in "
                f"{max(0.0, slot.next_start_at - now_mono):.0f}s"
            )
        else:
            state = CameraState.reconnecting
    elif status is None:
        state = CameraState.starting
    else:
        state = status.state
        last_error = status.last_error or (
            slot.last_error if state is not CameraState.streaming else None
        )
    last = status or slot.last_status
    return CameraStatusView(
        camera_id=slot.camera_id,
        organisation_id=slot.organisation_id,
        state=state,
        reasons=reasons or policy.reasons,
        may_view_live=policy.may_view_live,
        may_record=policy.may_record,
        recording=status.recording if status is not None else RecordingState.off,
        width=last.width if last is not None else None,
        height=last.height if last is not None else None,
        input_fps=status.input_fps if status is not None else 0.0,
        output_fps=status.output_fps if status is not None else 0.0,
        frames_in=slot.base_frames + (status.frames_in if status else 0),
        frames_out=slot.base_frames_out + (status.frames_out if status else 0),
        dropped_frames=slot.base_dropped + (status.dropped_frames if status else 0),
        reconnects=slot.base_reconnects + (status.reconnects if status else 0) + slot.restarts,
        restarts=slot.restarts,
        segments_written=slot.base_segments + (status.segments_written if status else 0),
        mask_fail_closed=slot.base_fail_closed + (status.mask_fail_closed if status else 0),
        live_viewers=slot.live.viewers,
        live_stream=status.live_stream if status is not None else None,
        recording_path=(
            slot.running.recording_path
            if slot.running is not None
            else (want.config.recording_path if want is not None and want.config else "transcode")
        ),
        passthrough_verified_at=last.passthrough_verified_at if last is not None else None,
        passthrough_checks=slot.base_checks + (status.passthrough_checks if status else 0),
        passthrough_failed=(
            (last.passthrough_failed if last is not None else None)
            or (want.passthrough_failed if want is not None else None)
        ),
        quarantined_segments=slot.base_quarantined + (status.quarantined_segments if status else 0),
        last_frame_at=last.last_frame_at if last is not None else None,
        last_error=clean_error(last_error),
        pid=slot.process.pid if slot.process is not None else None,
        updated_at=status.sent_at if status is not None else None,
    )
