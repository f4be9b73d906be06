"""The pipeline supervisor: a thread in the server that keeps one worker process per camera.

Every `poll_s` it reads the registry (its own engine and sessions), computes each camera's
policy, and turns that into the desired set of workers; every `tick_s` it collects worker
status, notices dead workers and manages recording gaps. Workers are child processes (a crash
in native code costs one camera, not the server) started from a forkserver (or spawn) context,
never forked from this threaded asyncio process.

- Desired config changed (source, mode, mask plan, timings) -> the worker is stopped
  (event, then terminate, then kill) and a fresh one started.
- Only the policy flags changed (basis revoked, schedule ended) -> pushed to the running worker
  through its control pipe; it acts on the next frame.
- Policy allows neither live view nor recording -> no worker; state `blocked` with the reasons.
- A worker that dies is restarted after an exponential backoff with jitter, within a restart
  budget (`restart_budget` per `restart_window_s`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from masking import plan_hash
from permits.policy import Policy
from registry import service as registry_service
from registry.models import Camera, CameraMode, SourceKind
from retention import service as retention_service
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import make_engine, make_sessionmaker, session_scope, utcnow
from vms.pipeline.config import ANONYMISE_ALL, PolicyFlags, SourceSpec, WorkerConfig
from vms.pipeline.gaps import CloseGap, GapTracker, Observation, OpenGap, not_recording_reason
from vms.pipeline.live import LiveChannel, LiveImage
from vms.pipeline.restart import Backoff, RestartBudget
from vms.pipeline.status import CameraState, RecordingState, WorkerStatus, clean_error
from vms.pipeline.worker import EXIT_STALLED, run_worker

logger = logging.getLogger(__name__)

# How long a worker gets to finalise its segment after being asked to stop, then after SIGTERM.
STOP_GRACE_S = 10.0
TERM_GRACE_S = 3.0


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
    last_frame_at: dt.datetime | None = None
    last_error: str | None = None
    pid: int | None = None
    updated_at: dt.datetime | None = None


@dataclass
class _Desired:
    camera_id: int
    organisation_id: int
    expects_recording: bool
    policy: PolicyFlags
    config: WorkerConfig | None  # None when the camera cannot run (a config error)
    error: str | None = None


@dataclass
class _Slot:
    camera_id: int
    organisation_id: int
    live: LiveChannel
    budget: RestartBudget
    backoff: Backoff
    desired: _Desired | None = None
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
    restarts: int = 0
    crashed: bool = False
    next_start_at: float = 0.0
    last_error: str | None = None
    gaps: GapTracker = field(default_factory=GapTracker)


@dataclass
class _Stopping:
    """A worker asked to stop: it finalises its segment, reports a last time, and exits."""

    camera_id: int
    process: BaseProcess
    control: Connection | None
    deadline: float
    status: WorkerStatus | None
    terminated: bool = False


def _context(start_method: str) -> BaseContext:
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # Workers fork from a server that already imported the heavy modules (PyAV, OpenCV,
        # SQLAlchemy): a camera starts in milliseconds instead of a second of imports.
        ctx.set_forkserver_preload(["vms.pipeline.worker"])
    return ctx


def build_source(camera: Camera, box: SecretBox) -> SourceSpec:
    """The worker's view of a registered camera's source (credentials decrypted)."""
    kind = camera.source_kind
    if kind is SourceKind.rtsp:
        return SourceSpec(kind="rtsp", url=registry_service.stream_url(camera=camera, box=box))
    if kind is SourceKind.onvif:
        user, password = registry_service.source_credentials(camera=camera, box=box)
        return SourceSpec(
            kind="onvif",
            onvif_host=camera.source_host,
            onvif_port=camera.source_port,
            username=user,
            password=password,
            profile_token=camera.source_profile_token,
        )
    return SourceSpec(kind="file", url=camera.source_path, realtime=True, loop=True)


def build_config(
    *,
    camera: Camera,
    policy: Policy,
    settings: Settings,
    box: SecretBox,
    overrides: dict[str, Any] | None = None,
) -> WorkerConfig:
    """The frozen config a worker for `camera` gets under `policy`."""
    p = settings.pipeline
    plan = camera.mask_plan
    digest = camera.mask_plan_hash
    if plan is None and policy.masking_required:
        plan, digest = ANONYMISE_ALL, plan_hash(ANONYMISE_ALL)
    config = WorkerConfig(
        camera_id=camera.id,
        organisation_id=camera.organisation_id,
        mode=camera.mode.value,
        source=build_source(camera, box),
        mask_plan=plan,
        mask_plan_hash=digest,
        policy=PolicyFlags(policy.may_view_live, policy.may_record, tuple(policy.reasons)),
        data_dir=str(settings.data_dir.resolve()),
        db_url=settings.db_url,
        segment_seconds=p.segment_seconds,
        open_timeout_s=p.open_timeout_s,
        read_timeout_s=p.read_timeout_s,
        stall_seconds=p.stall_seconds,
        reconnect_initial_s=p.backoff_initial_s,
        reconnect_max_s=p.backoff_max_s,
        jpeg_quality=p.jpeg_quality,
        live_fps=p.live_fps,
        models_dir=str(settings.resolved_models_dir),
    )
    return dataclasses.replace(config, **(overrides or {}))


class PipelineSupervisor:
    """start()/stop() from the app's lifespan; read methods are safe from any thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        secret_box: SecretBox | None = None,
        engine: Engine | None = None,
        start_method: str = "forkserver",
        tick_s: float = 0.2,
        poll_s: float = 1.0,
        worker_overrides: dict[str, Any] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self._box = secret_box or SecretBox(settings.secret_key_bytes())
        self._own_engine = engine is None
        self._engine = engine
        self._sessions: sessionmaker[Session] | None = None
        self._ctx = _context(start_method)
        self._tick_s = tick_s
        self._poll_s = poll_s
        self._overrides = dict(worker_overrides or {})
        self._clock = clock
        self._lock = threading.RLock()
        self._slots: dict[int, _Slot] = {}
        self._stopping: list[_Stopping] = []
        self._status_q: Any = None
        self._log_q: Any = None
        self._log_thread: threading.Thread | None = None
        self._logs_done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_poll = 0.0
        self.polls = 0

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        if self._engine is None:
            self._engine = make_engine(self.settings.db_url)
        self._sessions = make_sessionmaker(self._engine)
        self._status_q = self._ctx.Queue()
        self._log_q = self._ctx.Queue()
        self._log_thread = threading.Thread(
            target=self._forward_logs, name="pipeline-worker-logs", daemon=True
        )
        self._log_thread.start()
        try:
            with session_scope(self._sessions) as session:
                retention_service.close_open_gaps_at_startup(session=session, at=self._clock())
        except Exception:
            logger.exception("pipeline: cannot close gaps left by the previous run")
        self._stop.clear()
        self._logs_done.clear()
        self._thread = threading.Thread(target=self._loop, name="pipeline-supervisor", daemon=True)
        self._thread.start()
        logger.info("pipeline supervisor started")

    def stop(self) -> None:
        """Stop every worker (each finalises its segment) and the supervisor thread."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        with self._lock:
            slots = list(self._slots.values())
            for slot in slots:
                self._ask_to_stop(slot)
        deadline = time.monotonic() + STOP_GRACE_S
        while self._stopping and time.monotonic() < deadline + TERM_GRACE_S + 1:
            self._drain_status()
            self._reap(force_after=deadline)
            time.sleep(0.05)
        now = self._clock()
        for slot in slots:
            desired = slot.desired
            if desired is not None and desired.expects_recording:
                self._write_gaps(
                    slot, [OpenGap(now, "pipeline_stopped", "the recording service stopped")]
                )
        with self._lock:
            for slot in slots:
                slot.live.close()
            self._slots.clear()
        self._logs_done.set()
        if self._log_thread is not None:
            self._log_thread.join(timeout=5)
            self._log_thread = None
        for q in (self._status_q, self._log_q):
            if q is not None:
                q.close()
                q.join_thread()
        if self._own_engine and self._engine is not None:
            self._engine.dispose()
            self._engine = None
        logger.info("pipeline supervisor stopped")

    def _forward_logs(self) -> None:
        """Hand worker log records to this process's loggers (until stop, then drain)."""
        q = self._log_q
        while True:
            try:
                record: logging.LogRecord = q.get(timeout=0.2)
            except queue.Empty:
                if self._logs_done.is_set():
                    return
                continue
            except (OSError, ValueError, EOFError):
                return
            logging.getLogger(record.name).handle(record)

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                logger.exception("pipeline supervisor tick failed")
            self._stop.wait(max(0.0, self._tick_s - (time.monotonic() - started)))

    def tick(self) -> None:
        """One round: registry (every poll_s), statuses, dead workers, starts, gaps."""
        now = time.monotonic()
        if now - self._last_poll >= self._poll_s:
            self._last_poll = now
            desired = self._read_registry()
            if desired is not None:
                self._apply(desired)
            self.polls += 1
        self._drain_status()
        self._reap()
        self._check_workers()
        self._start_due()
        self._update_gaps()

    def _read_registry(self) -> dict[int, _Desired] | None:
        assert self._sessions is not None
        out: dict[int, _Desired] = {}
        at = self._clock()
        try:
            with session_scope(self._sessions) as session:
                for camera_id in registry_service.list_active_camera_ids(session=session):
                    out[camera_id] = self._desired(session, camera_id, at)
        except Exception:
            logger.exception("pipeline: cannot read the registry; keeping current workers")
            return None
        return out

    def _desired(self, session: Session, camera_id: int, at: dt.datetime) -> _Desired:
        camera = registry_service.get_camera_or_raise(session=session, camera_id=camera_id)
        policy = registry_service.policy(session=session, camera_id=camera_id, at=at)
        flags = PolicyFlags(policy.may_view_live, policy.may_record, tuple(policy.reasons))
        desired = _Desired(
            camera_id=camera.id,
            organisation_id=camera.organisation_id,
            expects_recording=camera.mode is not CameraMode.live,
            policy=flags,
            config=None,
        )
        try:
            desired.config = build_config(
                camera=camera,
                policy=policy,
                settings=self.settings,
                box=self._box,
                overrides=self._overrides,
            )
        except Exception as exc:
            desired.error = clean_error(f"cannot configure the camera: {type(exc).__name__}")
            logger.warning("camera %s: %s", camera_id, desired.error)
        return desired

    def _apply(self, desired: dict[int, _Desired]) -> None:
        with self._lock:
            for camera_id in list(self._slots):
                if camera_id not in desired:
                    # Decommissioned: it owes no more footage.
                    gone = self._slots.pop(camera_id)
                    self._ask_to_stop(gone)
                    gone.live.close()
                    if gone.gaps.open_reason is not None:
                        self._write_gaps(gone, [CloseGap(self._clock())])
            for camera_id, want in desired.items():
                slot = self._slots.get(camera_id)
                if slot is None:
                    slot = self._new_slot(want)
                    self._slots[camera_id] = slot
                slot.desired = want
                slot.organisation_id = want.organisation_id
                config = want.config
                if config is None or want.policy.blocked:
                    if slot.process is not None:
                        logger.info("camera %s: stopping worker (%s)", camera_id, _why(want))
                        self._ask_to_stop(slot)
                    slot.crashed = False
                    continue
                running = slot.running
                if running is None:
                    continue  # started by _start_due
                if running.restart_key() != config.restart_key():
                    logger.info("camera %s: configuration changed, restarting worker", camera_id)
                    self._ask_to_stop(slot)
                    slot.next_start_at = 0.0
                elif running.policy != config.policy:
                    self._push_policy(slot, config.policy)
                    slot.running = config

    def _new_slot(self, want: _Desired) -> _Slot:
        p = self.settings.pipeline
        return _Slot(
            camera_id=want.camera_id,
            organisation_id=want.organisation_id,
            live=LiveChannel.create(),
            budget=RestartBudget(limit=p.restart_budget, window=p.restart_window_s),
            backoff=Backoff(
                initial=p.backoff_initial_s, maximum=p.backoff_max_s, healthy_after=60.0
            ),
        )

    def _push_policy(self, slot: _Slot, policy: PolicyFlags) -> None:
        logger.info(
            "camera %s: policy now live=%s record=%s",
            slot.camera_id,
            policy.may_view_live,
            policy.may_record,
        )
        if slot.control is None:
            return
        # A worker that is gone is _check_workers' business.
        with contextlib.suppress(OSError, ValueError):
            slot.control.send(policy)

    # -- starting and stopping ---------------------------------------------------------------

    def _start_due(self) -> None:
        now = time.monotonic()
        due: list[tuple[_Slot, WorkerConfig]] = []
        with self._lock:
            for slot in self._slots.values():
                want = slot.desired
                if (
                    slot.process is not None
                    or self._is_stopping(slot.camera_id)
                    or want is None
                    or want.config is None
                    or want.policy.blocked
                    or now < slot.next_start_at
                ):
                    continue
                if slot.crashed:
                    if not slot.budget.allowed(now):
                        continue
                    slot.budget.spend(now)
                    slot.restarts += 1
                due.append((slot, want.config))
        # Outside the lock: the first start brings up the forkserver, and API reads must not
        # wait for that. Only this thread changes slots, so nothing moves meanwhile.
        for slot, config in due:
            self._start(slot, config)

    def _start(self, slot: _Slot, config: WorkerConfig) -> None:
        recv_end, send_end = self._ctx.Pipe(duplex=False)
        stop_event = self._ctx.Event()
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=run_worker,
            args=(
                config,
                self._status_q,
                recv_end,
                stop_event,
                slot.live.name,
                logging.getLogger().getEffectiveLevel(),
                self._log_q,
            ),
            name=f"vms-camera-{config.camera_id}",
            daemon=True,
        )
        try:
            process.start()
        except Exception as exc:
            send_end.close()
            recv_end.close()
            with self._lock:
                slot.crashed = True
                slot.next_start_at = time.monotonic() + slot.backoff.failed()
                slot.last_error = clean_error(f"cannot start worker: {exc}")
            logger.exception("camera %s: cannot start worker", config.camera_id)
            return
        recv_end.close()
        with self._lock:
            slot.process = process
            slot.control = send_end
            slot.stop_event = stop_event
            slot.running = config
            slot.started_at = time.monotonic()
            slot.status = None
        logger.info(
            "camera %s: worker started (pid %s, %s)",
            config.camera_id,
            process.pid,
            config.source.describe(),
        )

    def _ask_to_stop(self, slot: _Slot) -> None:
        process = slot.process
        if process is None:
            return
        if slot.stop_event is not None:
            slot.stop_event.set()
        self._stopping.append(
            _Stopping(
                camera_id=slot.camera_id,
                process=process,
                control=slot.control,
                deadline=time.monotonic() + STOP_GRACE_S,
                status=slot.status,
            )
        )
        slot.process = None
        slot.control = None
        slot.stop_event = None
        slot.running = None
        slot.status = None

    def _is_stopping(self, camera_id: int) -> bool:
        return any(item.camera_id == camera_id for item in self._stopping)

    def _reap(self, force_after: float | None = None) -> None:
        """Collect stopped workers; SIGTERM after the grace period, SIGKILL after that."""
        now = time.monotonic()
        keep: list[_Stopping] = []
        for item in self._stopping:
            process = item.process
            if not process.is_alive():
                process.join(timeout=0)
                self._gone(item)
                continue
            deadline = item.deadline if force_after is None else min(item.deadline, force_after)
            if not item.terminated and now >= deadline:
                logger.warning("worker pid %s did not stop in time; terminating", process.pid)
                process.terminate()
                item.terminated = True
                item.deadline = now + TERM_GRACE_S
            elif item.terminated and now >= item.deadline:
                logger.error("worker pid %s ignored SIGTERM; killing", process.pid)
                process.kill()
                process.join(timeout=1)
                self._gone(item)
                continue
            keep.append(item)
        self._stopping = keep

    def _gone(self, item: _Stopping) -> None:
        with self._lock:
            slot = self._slots.get(item.camera_id)
            if slot is not None:
                self._retire(slot, item.status)
        if item.control is not None:
            item.control.close()
        item.process.close()

    def _check_workers(self) -> None:
        now = time.monotonic()
        with self._lock:
            for slot in self._slots.values():
                process = slot.process
                if process is None or process.is_alive():
                    continue
                process.join(timeout=0)
                code = process.exitcode
                ran_for = now - slot.started_at
                self._retire(slot, slot.status)
                if slot.control is not None:
                    slot.control.close()
                slot.process = slot.control = slot.stop_event = None
                slot.running = None
                slot.crashed = True
                slot.backoff.ran_for(ran_for)
                delay = slot.backoff.failed()
                slot.next_start_at = max(now + delay, slot.budget.next_allowed_at(now))
                why = (
                    "stalled in the decoder" if code == EXIT_STALLED else f"exited with code {code}"
                )
                slot.last_error = f"worker {why} after {ran_for:.0f}s; restarting"
                logger.warning(
                    "camera %s: worker %s; restart in %.1fs",
                    slot.camera_id,
                    why,
                    slot.next_start_at - now,
                )

    @staticmethod
    def _retire(slot: _Slot, status: WorkerStatus | None) -> None:
        """Fold a finished worker's counters into the camera's totals."""
        if status is None:
            return
        slot.base_reconnects += status.reconnects
        slot.base_dropped += status.dropped_frames
        slot.base_frames += status.frames_in
        slot.base_frames_out += status.frames_out
        slot.base_segments += status.segments_written
        slot.base_fail_closed += status.mask_fail_closed
        slot.last_status = status

    def _drain_status(self) -> None:
        q = self._status_q
        if q is None:
            return
        while True:
            try:
                status: WorkerStatus = q.get_nowait()
            except queue.Empty:
                return
            except (OSError, ValueError, EOFError):
                return
            with self._lock:
                slot = self._slots.get(status.camera_id)
                if slot is not None and slot.process is not None and slot.process.pid == status.pid:
                    slot.status = status
                    if status.state is CameraState.streaming:
                        slot.crashed = False
                        slot.last_error = None
                    continue
            for item in self._stopping:
                if item.process.pid == status.pid:
                    item.status = status  # its final word: where its footage ends

    # -- gaps --------------------------------------------------------------------------------

    def _observe(self, slot: _Slot) -> Observation:
        want = slot.desired
        expects = want is not None and want.expects_recording
        if self._is_stopping(slot.camera_id):
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
        )
        return Observation(
            expects_recording=expects,
            recording=alive and recording_state is RecordingState.recording,
            reason=reason,
            detail=detail,
            recorded_until=last.recorded_until if last is not None else None,
            recording_since=status.recording_since if status is not None else None,
        )

    def _update_gaps(self) -> None:
        now = self._clock()
        with self._lock:
            work = [(slot, self._observe(slot)) for slot in self._slots.values()]
        for slot, obs in work:
            before = (slot.gaps.open_reason, slot.gaps.open_detail)
            actions = slot.gaps.step(obs, now)
            if actions and not self._write_gaps(slot, actions):
                slot.gaps.open_reason, slot.gaps.open_detail = before

    def _write_gaps(self, slot: _Slot, actions: Iterable[OpenGap | CloseGap]) -> bool:
        if self._sessions is None:
            return False
        try:
            with session_scope(self._sessions) as session:
                for action in actions:
                    if isinstance(action, OpenGap):
                        retention_service.open_gap(
                            session=session,
                            camera_id=slot.camera_id,
                            start=action.start,
                            reason=action.reason,
                            detail=action.detail,
                        )
                        logger.info(
                            "camera %s: recording gap from %s (%s)",
                            slot.camera_id,
                            action.start.isoformat(),
                            action.reason,
                        )
                    else:
                        retention_service.close_gap(
                            session=session, camera_id=slot.camera_id, end=action.end
                        )
        except Exception:
            logger.exception("camera %s: cannot write recording gap", slot.camera_id)
            return False
        return True

    # -- reads for the API -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def camera_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._slots)

    def status(self, camera_id: int) -> CameraStatusView:
        with self._lock:
            slot = self._slots.get(camera_id)
            if slot is None:
                return CameraStatusView(camera_id=camera_id, organisation_id=None,
                                        state=CameraState.stopped)  # fmt: skip
            return self._view(slot)

    def statuses(self) -> list[CameraStatusView]:
        with self._lock:
            return [self._view(slot) for slot in self._slots.values()]

    def _view(self, slot: _Slot) -> CameraStatusView:
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
            last_frame_at=last.last_frame_at if last is not None else None,
            last_error=clean_error(last_error),
            pid=slot.process.pid if slot.process is not None else None,
            updated_at=status.sent_at if status is not None else None,
        )

    def live_allowed(self, camera_id: int) -> bool:
        with self._lock:
            slot = self._slots.get(camera_id)
            return bool(slot and slot.desired and slot.desired.policy.may_view_live)

    def add_viewer(self, camera_id: int) -> bool:
        with self._lock:
            slot = self._slots.get(camera_id)
            if slot is None:
                return False
            slot.live._add_viewers(1)
            return True

    def remove_viewer(self, camera_id: int) -> None:
        with self._lock:
            slot = self._slots.get(camera_id)
            if slot is not None:
                slot.live._add_viewers(-1)

    def latest_frame(self, camera_id: int, after_seq: int = 0) -> LiveImage | None:
        with self._lock:
            slot = self._slots.get(camera_id)
            if slot is None or slot.desired is None or not slot.desired.policy.may_view_live:
                return None
            return slot.live.latest(after_seq)

    def request_preview(self, camera_id: int, mode: int) -> int | None:
        """Ask the camera's worker for a preview; None if no worker runs."""
        with self._lock:
            slot = self._slots.get(camera_id)
            if slot is None or slot.process is None:
                return None
            return slot.live.request_preview(mode)

    def preview(self, camera_id: int, request_id: int) -> LiveImage | None:
        with self._lock:
            slot = self._slots.get(camera_id)
            return slot.live.preview(request_id) if slot is not None else None

    def worker_config(self, camera_id: int) -> WorkerConfig | None:
        with self._lock:
            slot = self._slots.get(camera_id)
            return slot.desired.config if slot is not None and slot.desired else None

    def worker_pid(self, camera_id: int) -> int | None:
        with self._lock:
            slot = self._slots.get(camera_id)
            return slot.process.pid if slot is not None and slot.process is not None else None

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


def _why(want: _Desired) -> str:
    if want.config is None:
        return want.error or "configuration error"
    return "; ".join(want.policy.reasons) or "policy"
