"""The pipeline supervisor: a thread in the server that keeps one worker process per camera.

Over 500 lines on purpose: `PipelineSupervisor` is one thread's loop over the camera slots
under one lock; the parts that stand alone already live apart (`desired`, `slots`,
`processes`, `restart`, `gaps`).

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
import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from retention import service as retention_service
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import make_engine, make_sessionmaker, session_scope, utcnow
from vms.pipeline.backend import ClusterView, NodeView
from vms.pipeline.config import PolicyFlags, WorkerConfig
from vms.pipeline.desired import DesiredCamera, read_desired
from vms.pipeline.gaps import CloseGap, OpenGap
from vms.pipeline.index import write_gaps
from vms.pipeline.live import LiveChannel, LiveImage
from vms.pipeline.processes import WorkerProcesses
from vms.pipeline.restart import Backoff, RestartBudget
from vms.pipeline.slots import (
    CameraStatusView,
    StoppingWorker,
    WorkerSlot,
    observe,
    retire,
    status_view,
)
from vms.pipeline.status import CameraState, clean_error
from vms.pipeline.worker import EXIT_PASSTHROUGH, EXIT_STALLED

logger = logging.getLogger(__name__)

# How long a worker gets to finalise its segment after being asked to stop, then after SIGTERM.
STOP_GRACE_S = 10.0
TERM_GRACE_S = 3.0


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
        self._processes = WorkerProcesses(start_method)
        self._tick_s = tick_s
        self._poll_s = poll_s
        self._overrides = dict(worker_overrides or {})
        self._clock = clock
        self._lock = threading.RLock()
        self._slots: dict[int, WorkerSlot] = {}
        self._stopping: list[StoppingWorker] = []
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
        self._processes.open()
        try:
            with session_scope(self._sessions) as session:
                retention_service.close_open_gaps_at_startup(session=session, at=self._clock())
        except Exception:
            logger.exception("pipeline: cannot close gaps left by the previous run")
        self._stop.clear()
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
                    slot.camera_id,
                    [OpenGap(now, "pipeline_stopped", "the recording service stopped")],
                )
        with self._lock:
            for slot in slots:
                slot.live.close()
            self._slots.clear()
        self._processes.close()
        if self._own_engine and self._engine is not None:
            self._engine.dispose()
            self._engine = None
        logger.info("pipeline supervisor stopped")

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

    def _read_registry(self) -> dict[int, DesiredCamera] | None:
        assert self._sessions is not None
        try:
            with session_scope(self._sessions) as session:
                return read_desired(
                    session=session,
                    settings=self.settings,
                    box=self._box,
                    at=self._clock(),
                    overrides=self._overrides,
                )
        except Exception:
            logger.exception("pipeline: cannot read the registry; keeping current workers")
            return None

    def _apply(self, desired: dict[int, DesiredCamera]) -> None:
        with self._lock:
            for camera_id in list(self._slots):
                if camera_id not in desired:
                    # Decommissioned: it owes no more footage.
                    gone = self._slots.pop(camera_id)
                    self._ask_to_stop(gone)
                    gone.live.close()
                    if gone.gaps.open_reason is not None:
                        self._write_gaps(gone.camera_id, [CloseGap(self._clock())])
            for camera_id, want in desired.items():
                slot = self._slots.get(camera_id)
                if slot is None:
                    slot = self._new_slot(want)
                    self._slots[camera_id] = slot
                slot.desired = want
                slot.await_poll = False
                slot.organisation_id = want.organisation_id
                config = want.config
                if config is None or want.policy.blocked:
                    if slot.process is not None:
                        logger.info("camera %s: stopping worker (%s)", camera_id, want.why_not())
                        self._ask_to_stop(slot)
                    slot.crashed = False
                    continue
                running = slot.running
                if running is None:
                    continue  # started by _start_due
                if running.restart_key() != config.restart_key():
                    logger.info("camera %s: configuration changed, restarting worker", camera_id)
                    if running.recording_path == "passthrough" and want.passthrough_failed:
                        # Its record says passthrough stopped (the worker may not have exited
                        # yet): the gap until the next worker records says why.
                        slot.passthrough_stopped = want.passthrough_failed
                    self._ask_to_stop(slot)
                    slot.next_start_at = 0.0
                elif running.policy != config.policy:
                    self._push_policy(slot, config.policy)
                    slot.running = config

    def _new_slot(self, want: DesiredCamera) -> WorkerSlot:
        p = self.settings.pipeline
        return WorkerSlot(
            camera_id=want.camera_id,
            organisation_id=want.organisation_id,
            live=LiveChannel.create(),
            budget=RestartBudget(limit=p.restart_budget, window=p.restart_window_s),
            backoff=Backoff(
                initial=p.backoff_initial_s, maximum=p.backoff_max_s, healthy_after=60.0
            ),
        )

    def _push_policy(self, slot: WorkerSlot, policy: PolicyFlags) -> None:
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
        due: list[tuple[WorkerSlot, WorkerConfig]] = []
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
                    or slot.await_poll
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

    def _start(self, slot: WorkerSlot, config: WorkerConfig) -> None:
        try:
            process, control, stop_event = self._processes.spawn(config, slot.live.name)
        except Exception as exc:
            with self._lock:
                slot.crashed = True
                slot.next_start_at = time.monotonic() + slot.backoff.failed()
                slot.last_error = clean_error(f"cannot start worker: {exc}")
            logger.exception("camera %s: cannot start worker", config.camera_id)
            return
        with self._lock:
            slot.process = process
            slot.control = control
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

    def _ask_to_stop(self, slot: WorkerSlot) -> None:
        process = slot.process
        if process is None:
            return
        if slot.stop_event is not None:
            slot.stop_event.set()
        self._stopping.append(
            StoppingWorker(
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
        keep: list[StoppingWorker] = []
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

    def _gone(self, item: StoppingWorker) -> None:
        with self._lock:
            slot = self._slots.get(item.camera_id)
            if slot is not None:
                retire(slot, item.status)
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
                retire(slot, slot.status)
                if slot.control is not None:
                    slot.control.close()
                slot.process = slot.control = slot.stop_event = None
                slot.running = None
                if code == EXIT_PASSTHROUGH:
                    # Not a crash: start again as soon as the registry says how (next poll).
                    logger.warning(
                        "camera %s: passthrough stopped; restarting per its record",
                        slot.camera_id,
                    )
                    slot.await_poll = True
                    last = slot.last_status
                    slot.passthrough_stopped = (
                        last.passthrough_failed if last and last.passthrough_failed else None
                    ) or "the worker stopped passthrough"
                    self._last_poll = 0.0
                    continue
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

    def _drain_status(self) -> None:
        for status in self._processes.statuses():
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

    def _update_gaps(self) -> None:
        now = self._clock()
        with self._lock:
            work = [
                (slot, observe(slot, stopping=self._is_stopping(slot.camera_id)))
                for slot in self._slots.values()
            ]
        for slot, obs in work:
            if obs.recording:
                slot.passthrough_stopped = None
            before = (slot.gaps.open_reason, slot.gaps.open_detail)
            actions = slot.gaps.step(obs, now)
            if actions and not self._write_gaps(slot.camera_id, actions):
                slot.gaps.open_reason, slot.gaps.open_detail = before

    def _write_gaps(self, camera_id: int, actions: Iterable[OpenGap | CloseGap]) -> bool:
        if self._sessions is None:
            return False
        return write_gaps(self._sessions, camera_id, actions)

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
            return status_view(slot)

    def statuses(self) -> list[CameraStatusView]:
        with self._lock:
            return [status_view(slot) for slot in self._slots.values()]

    def live_allowed(self, camera_id: int) -> bool:
        with self._lock:
            slot = self._slots.get(camera_id)
            return bool(slot and slot.desired and slot.desired.policy.may_view_live)

    def add_viewer(self, camera_id: int) -> bool:
        with self._lock:
            slot = self._slots.get(camera_id)
            if slot is None:
                return False
            slot.live.add_viewer()
            return True

    def remove_viewer(self, camera_id: int) -> None:
        with self._lock:
            slot = self._slots.get(camera_id)
            if slot is not None:
                slot.live.remove_viewer()

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

    def cluster(self) -> ClusterView:
        """This server is the only node: every camera worker is its child process."""
        with self._lock:
            cameras = tuple(sorted(c for c, s in self._slots.items() if s.process is not None))
        node = NodeView(
            node_id="local",
            address=socket.gethostname(),
            alive=True,
            camera_slots=None,
            cameras=cameras,
            head=True,
        )
        return ClusterView(
            backend="local", reachable=self.running, nodes=(node,), updated_at=self._clock()
        )
