"""One camera on a cluster node: lease, configuration from the database, the ordinary
`CameraWorker`, recording gaps, status. Free of Ray, so it is tested on its own; the Ray actor
(`vms.pipeline.cluster.actor`) is a thin shell around it.

Over 500 lines on purpose: `CameraRunner` is one state machine (lease, worker, gaps, reload)
whose fencing (a lost lease stops the worker before anything more is indexed) is only
checkable with its steps read together; the helpers around it are small.

A runner's life, on its own thread:

1. take the camera's lease (`leases.acquire`): at once if it is free or expired, or if its
   holder was a process on this node that no longer exists (Ray restarted us after a crash);
   otherwise wait until it expires (a node Ray declared dead may only be cut off, and its
   actor may still be writing);
2. read the camera from the database (`read_camera`), never from arguments captured when the
   actor was first created: Ray reruns `__init__` on every restart;
3. run `CameraWorker` on a thread, with a segment index and gap writes fenced by the lease
   epoch; renew the lease every `ttl / 3`. A lost lease (a newer epoch exists) or a lease
   about to expire without renewal (the database is unreachable) stops the worker at once:
   whatever it still tries to index is refused;
4. when the reconcile loop reports a different digest for the camera, read it again: policy
   flags alone are pushed to the running worker, anything else restarts it.

A worker whose reader hangs in native code ends the whole process (`EXIT_STALLED`), and Ray
starts a fresh one, as the local supervisor does with its child processes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from registry import service as registry_service
from retention import service as retention_service
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import make_engine, make_sessionmaker, session_scope, utcnow
from vms.pipeline import gaps as gap_reasons
from vms.pipeline.cluster import leases
from vms.pipeline.cluster.camera import camera_digest, read_camera
from vms.pipeline.config import WorkerConfig
from vms.pipeline.desired import DesiredCamera
from vms.pipeline.gaps import (
    CloseGap,
    GapAction,
    GapTracker,
    Observation,
    OpenGap,
    not_recording_reason,
)
from vms.pipeline.index import DbSegmentIndex, write_gaps
from vms.pipeline.live import LiveChannel, LiveImage
from vms.pipeline.recorder import SegmentInfo, SegmentRefused
from vms.pipeline.restart import Backoff
from vms.pipeline.slots import CameraStatusView
from vms.pipeline.status import CameraState, RecordingState, WorkerStatus, clean_error
from vms.pipeline.worker import EXIT_PASSTHROUGH, EXIT_STALLED, CameraWorker, camera_worker

logger = logging.getLogger(__name__)

TICK_S = 0.2
# Without a live-frame request for this long, the gateway is gone: stop encoding JPEGs.
VIEWERS_EXPIRE_S = 3.0
STOP_GRACE_S = 10.0
# How far back a successor looks for the footage its crashed predecessor indexed last.
LOOKBACK = dt.timedelta(days=1)
EXIT_ORPHANED = 70


@dataclass(frozen=True, slots=True)
class RunnerReport:
    """What a camera actor tells the reconcile loop."""

    view: CameraStatusView
    digest: str | None  # of the configuration it runs (None: not loaded yet)
    holder: str
    epoch: int | None  # its lease epoch (None: waiting for the lease)


class _LatestStatus:
    """The worker's status sink: keeps its latest report."""

    def __init__(self) -> None:
        self.value: WorkerStatus | None = None

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        self.value = obj


class FencedSegmentIndex(DbSegmentIndex):
    """The footage index of a lease holder: every row carries the fencing token."""

    def __init__(
        self, factory: sessionmaker[Session], organisation_id: int, fence: leases.Fence
    ) -> None:
        super().__init__(factory, organisation_id, fence=fence)
        self.refused = 0

    def add(self, info: SegmentInfo) -> None:
        try:
            super().add(info)
        except leases.LeaseLost:
            self.refused += 1
            # The successor's crash recovery may already have indexed this very file (it was
            # renamed before we were cut off): then the file must stay where its row says.
            if info.path in self.indexed_paths(
                info.camera_id, info.start, info.start + dt.timedelta(milliseconds=1)
            ):
                logger.warning(
                    "camera %s: %s was indexed by the successor", info.camera_id, info.path
                )
                return
            logger.error(
                "camera %s: segment %s refused, the lease was taken over",
                info.camera_id,
                info.path,
            )
            # Not a failure to retry (the pending list): the new holder records this time.
            raise SegmentRefused(info.path) from None


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine is running (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")


class CameraRunner:
    """start() once; report()/live()/preview() from any thread; shutdown() to stop cleanly."""

    def __init__(
        self,
        camera_id: int,
        settings: Settings,
        *,
        node_id: str,
        holder: str | None = None,
        engine: Engine | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        worker_overrides: dict[str, Any] | None = None,
        holder_gone: Callable[[leases.LeaseState], bool] | None = None,
        node_alive: Callable[[], bool] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self.node_id = node_id
        self.pid = os.getpid()
        self.holder = holder or f"{node_id[:12]}:{self.pid}:{os.urandom(4).hex()}"
        self._box = SecretBox(settings.secret_key_bytes())
        self._key = settings.secret_key_bytes()
        self._own_engine = engine is None
        self._engine = engine or make_engine(settings.db_url)
        self._sessions = make_sessionmaker(self._engine)
        self._clock = clock
        self._overrides = dict(worker_overrides or {})
        self._ttl = settings.pipeline.lease_ttl_s
        self._holder_gone = holder_gone or self.local_holder_gone
        self._node_alive = node_alive
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.live_channel = _camera_channel(camera_id, self.pid)
        self._viewers_at = 0.0
        # Lease
        self.lease: leases.Lease | None = None
        self._renewed_mono = 0.0
        self._waiting: str | None = "waiting for the camera's lease"
        # Configuration
        self.desired: DesiredCamera | None = None
        self.digest: str | None = None
        self._wanted_digest: str | None = None
        self._loaded = False
        # Worker
        self._worker: CameraWorker | None = None
        self._worker_thread: threading.Thread | None = None
        self._worker_code: int | None = None
        self._worker_stop = threading.Event()
        self._control: Connection | None = None
        self._status = _LatestStatus()
        self._running: WorkerConfig | None = None
        self._next_start = 0.0
        self._started_mono = 0.0
        p = settings.pipeline
        self._backoff = Backoff(
            initial=p.backoff_initial_s, maximum=p.backoff_max_s, healthy_after=60.0
        )
        self.restarts = 0
        self.last_error: str | None = None
        self.last_status: WorkerStatus | None = None
        self.index: FencedSegmentIndex | None = None
        # Gaps
        self.gaps = GapTracker()
        self.fenced_writes_refused = 0

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"camera-{self.camera_id}", daemon=True
        )
        self._thread.start()

    def shutdown(self, reason: str | None = None, detail: str | None = None) -> None:
        """Stop cleanly: finalise the open segment, write the gap `reason` (None: the camera
        owes no more footage, its open gap is closed), release the lease."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=STOP_GRACE_S + 5)
        self._thread = None
        self._stop_worker()
        lease = self.lease
        if lease is not None:
            now = self._clock()
            expects = self.desired is not None and self.desired.expects_recording
            if reason is None:
                if self.gaps.open_reason is not None:
                    self._write_gaps([CloseGap(now)])
            elif expects:
                until = self.last_status.recorded_until if self.last_status else None
                start = until if until is not None and until <= now else now
                self._write_gaps([OpenGap(start, reason, detail)])
            try:
                with session_scope(self._sessions) as session:
                    leases.release(
                        session=session,
                        camera_id=self.camera_id,
                        holder=lease.holder,
                        epoch=lease.epoch,
                        now=now,
                    )
            except Exception:
                logger.exception("camera %s: cannot release the lease", self.camera_id)
            self.lease = None
        self.live_channel.close()
        if self._own_engine:
            self._engine.dispose()

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                logger.exception("camera %s: runner tick failed", self.camera_id)
            self._stop.wait(max(0.0, TICK_S - (time.monotonic() - started)))

    def tick(self) -> None:
        if self._node_alive is not None and not self._node_alive():
            # Orphaned: Ray on this node is gone (its head stayed unreachable, or the node was
            # stopped) and nobody would stop this process; the camera's next actor runs
            # elsewhere, or here once the node is back.
            logger.error("camera %s: the node's Ray runtime is gone; stopping", self.camera_id)
            self.shutdown(gap_reasons.WORKER_CRASHED, "the node left the cluster")
            os._exit(EXIT_ORPHANED)
        if self.lease is None and not self._acquire():
            return
        if not self._keep_lease():
            return
        if not self._loaded or (
            self._wanted_digest is not None and self._wanted_digest != self.digest
        ):
            self._reload()
        self._check_worker()
        self._start_due()
        self._expire_viewers()
        self._update_gaps()

    # -- the lease ---------------------------------------------------------------------------

    def _acquire(self) -> bool:
        now = self._clock()
        try:
            with session_scope(self._sessions) as session:
                held = leases.current(session=session, camera_id=self.camera_id)
                steal = None
                if (
                    held is not None
                    and held.live(now)
                    and held.holder != self.holder
                    and self._holder_gone(held)
                ):
                    # Our predecessor is gone for sure: no need to wait for its lease to end.
                    steal = held.epoch
                lease = leases.acquire(
                    session=session,
                    camera_id=self.camera_id,
                    holder=self.holder,
                    node_id=self.node_id,
                    pid=self.pid,
                    ttl_s=self._ttl,
                    now=now,
                    steal_epoch=steal,
                )
                self._adopt_gaps(session, lease, now)
        except leases.LeaseHeld as exc:
            with self._lock:
                self._waiting = clean_error(f"waiting for the camera's lease: {exc}")
            return False
        except Exception as exc:
            logger.warning("camera %s: cannot take the lease: %s", self.camera_id, exc)
            with self._lock:
                self._waiting = clean_error(f"cannot reach the database for the lease: {exc}")
            return False
        with self._lock:
            self.lease = lease
            self._renewed_mono = time.monotonic()
            self._waiting = None
            self._loaded = False
        logger.info(
            "camera %s: lease epoch %s taken by %s%s",
            self.camera_id,
            lease.epoch,
            self.holder,
            " after a crash" if lease.after_crash else "",
        )
        return True

    def local_holder_gone(self, held: leases.LeaseState) -> bool:
        """A holder process on this very node that no longer exists."""
        return held.node_id == self.node_id and held.pid is not None and not pid_alive(held.pid)

    def _adopt_gaps(self, session: Session, lease: leases.Lease, now: dt.datetime) -> None:
        """Continue the camera's gap record where the previous holder left it: its open gap
        stays open until we record; a predecessor that died leaves a `worker_crashed` gap
        from the end of its last indexed segment."""
        open_gaps = [
            g
            for g in retention_service.camera_gaps(
                session=session, camera_id=self.camera_id, start=now - LOOKBACK, end=now
            )
            if g.end is None
        ]
        if open_gaps:
            self.gaps.open_reason, self.gaps.open_detail = (
                open_gaps[-1].reason,
                open_gaps[-1].detail,
            )
        if not lease.after_crash or open_gaps:
            return
        camera = registry_service.get_camera(session=session, camera_id=self.camera_id)
        if camera is None or camera.mode.value == "live":
            return  # a live-only camera owes no footage
        previous = lease.previous
        assert previous is not None
        start = _last_recorded(session, self.camera_id, now) or previous.renewed_at
        detail = f"camera actor on node {(previous.node_id or '?')[:12]} lost"
        retention_service.open_gap(
            session=session,
            camera_id=self.camera_id,
            start=min(start, now),
            reason=gap_reasons.WORKER_CRASHED,
            detail=detail,
        )
        self.gaps.open_reason, self.gaps.open_detail = gap_reasons.WORKER_CRASHED, detail

    def _keep_lease(self) -> bool:
        """Renew every ttl/3; False (worker stopped) once the lease is lost or about to run
        out unrenewed."""
        lease = self.lease
        assert lease is not None
        mono = time.monotonic()
        if mono - self._renewed_mono < self._ttl / 3:
            return True
        try:
            with session_scope(self._sessions) as session:
                leases.renew(
                    session=session,
                    camera_id=self.camera_id,
                    holder=lease.holder,
                    epoch=lease.epoch,
                    ttl_s=self._ttl,
                    now=self._clock(),
                )
        except leases.LeaseLost:
            logger.error(
                "camera %s: lease epoch %s was taken over; stopping the worker",
                self.camera_id,
                lease.epoch,
            )
            self._lose_lease("the camera's lease was taken over by another node")
            return False
        except Exception as exc:
            # Stop before the lease can expire: by then a successor may start writing.
            if mono - self._renewed_mono > self._ttl * 0.7:
                logger.error(
                    "camera %s: cannot renew the lease (%s); stopping", self.camera_id, exc
                )
                self._lose_lease(clean_error(f"cannot renew the camera's lease: {exc}"))
                return False
            return True
        self._renewed_mono = mono
        return True

    def _lose_lease(self, why: str | None) -> None:
        self._stop_worker()
        with self._lock:
            self.lease = None
            self._waiting = why
            self.gaps = GapTracker()

    # -- configuration -----------------------------------------------------------------------

    def _reload(self) -> None:
        try:
            with session_scope(self._sessions) as session:
                desired = read_camera(
                    session=session,
                    settings=self.settings,
                    box=self._box,
                    camera_id=self.camera_id,
                    at=self._clock(),
                )
        except Exception:
            logger.exception(
                "camera %s: cannot read the camera; keeping the worker", self.camera_id
            )
            return
        if desired is not None and desired.config is not None and self._overrides:
            desired.config = replace(desired.config, **self._overrides)
        digest = camera_digest(desired, self._key)
        with self._lock:
            self.desired, self.digest, self._loaded = desired, digest, True
        config = desired.config if desired is not None else None
        running = self._running
        if config is None or desired is None or desired.policy.blocked:
            if running is not None:
                logger.info(
                    "camera %s: stopping the worker (%s)",
                    self.camera_id,
                    desired.why_not() if desired else "decommissioned",
                )
                self._stop_worker()
            return
        if running is None:
            return
        if running.restart_key() != config.restart_key():
            logger.info("camera %s: configuration changed, restarting the worker", self.camera_id)
            self._stop_worker()
            self._next_start = 0.0
        elif running.policy != config.policy:
            if self._control is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._control.send(config.policy)
            self._running = config

    # -- the worker --------------------------------------------------------------------------

    def _start_due(self) -> None:
        want = self.desired
        lease = self.lease
        if (
            self._worker is not None
            or lease is None
            or want is None
            or want.config is None
            or want.policy.blocked
            or time.monotonic() < self._next_start
        ):
            return
        config = want.config
        fence = leases.Fence(self.camera_id, lease.holder, lease.epoch)
        recv, send = multiprocessing.Pipe(duplex=False)
        self._worker_stop = threading.Event()
        self._status = _LatestStatus()

        def index_factory(cfg: WorkerConfig) -> tuple[Any, Callable[[], None]]:
            self.index = FencedSegmentIndex(self._sessions, cfg.organisation_id, fence)
            return self.index, lambda: None

        worker = camera_worker(
            config,
            status=self._status,
            control=recv,
            stop=self._worker_stop,
            # The worker closes its channel when it ends; the runner's outlives it.
            live=LiveChannel.attach(self.live_channel.name),
            index_factory=index_factory,
        )
        self._worker_code = None

        def run() -> None:
            try:
                self._worker_code = worker.run()
            except Exception as exc:
                logger.exception("camera %s: worker failed", self.camera_id)
                self.last_error = clean_error(f"worker failed: {exc}")
                self._worker_code = 1
            finally:
                recv.close()

        thread = threading.Thread(target=run, name=f"camera-{self.camera_id}-worker", daemon=True)
        with self._lock:
            self._worker, self._worker_thread, self._control = worker, thread, send
            self._running = config
            self._started_mono = time.monotonic()
        thread.start()
        logger.info(
            "camera %s: worker started on node %s (%s, lease epoch %s)",
            self.camera_id,
            self.node_id[:12],
            config.source.describe(),
            lease.epoch,
        )

    def _stop_worker(self) -> None:
        thread = self._worker_thread
        if thread is None:
            return
        self._worker_stop.set()
        thread.join(timeout=STOP_GRACE_S)
        if thread.is_alive():
            logger.error("camera %s: worker did not stop; ending the process", self.camera_id)
            os._exit(EXIT_STALLED)
        self._retire()

    def _retire(self) -> None:
        with self._lock:
            if self._status.value is not None:
                self.last_status = self._status.value
            if self._control is not None:
                self._control.close()
            self._worker = self._worker_thread = self._control = None
            self._running = None

    def _check_worker(self) -> None:
        thread = self._worker_thread
        if thread is None or thread.is_alive():
            return
        code = self._worker_code
        ran_for = time.monotonic() - self._started_mono
        self._retire()
        if code == EXIT_STALLED:
            # The reader is stuck in native code: only a fresh process gets rid of it.
            logger.error(
                "camera %s: reader hung; ending the process for Ray to restart it", self.camera_id
            )
            os._exit(EXIT_STALLED)
        if code == EXIT_PASSTHROUGH:
            # Passthrough stopped (a failed check, a camera that cannot mask): the camera's
            # record now says how it runs; start again at once on that.
            logger.warning("camera %s: passthrough stopped; restarting per its record",
                           self.camera_id)  # fmt: skip
            self._reload()
            self._next_start = 0.0
            return
        self._backoff.ran_for(ran_for)
        delay = self._backoff.failed()
        self._next_start = time.monotonic() + delay
        self.restarts += 1
        self.last_error = self.last_error or f"worker exited with code {code}; restarting"
        logger.warning(
            "camera %s: worker ended (code %s); restart in %.1fs", self.camera_id, code, delay
        )

    # -- gaps --------------------------------------------------------------------------------

    def _observe(self) -> Observation:
        want = self.desired
        expects = want is not None and want.expects_recording
        status = self._status.value if self._worker is not None else None
        last = status or self.last_status
        if status is None:
            return Observation(
                expects_recording=expects,
                recording=False,
                reason=gap_reasons.POLICY if want is not None and want.policy.blocked else None,
                detail="; ".join(want.policy.reasons) if want is not None else None,
                recorded_until=last.recorded_until if last is not None else None,
            )
        reason, detail = not_recording_reason(
            policy=want.policy if want is not None else None,
            state=status.state,
            recording=status.recording,
            worker_alive=True,
            crashed=False,
            last_error=status.last_error,
        )
        return Observation(
            expects_recording=expects,
            recording=status.recording is RecordingState.recording,
            reason=reason,
            detail=detail,
            recorded_until=status.recorded_until,
            recording_since=status.recording_since,
        )

    def _update_gaps(self) -> None:
        if self.lease is None or self.desired is None:
            return
        before = (self.gaps.open_reason, self.gaps.open_detail)
        actions = self.gaps.step(self._observe(), self._clock())
        if actions and not self._write_gaps(actions):
            self.gaps.open_reason, self.gaps.open_detail = before

    def _write_gaps(self, actions: Iterable[GapAction]) -> bool:
        lease = self.lease
        if lease is None:
            return False
        fence = leases.Fence(self.camera_id, lease.holder, lease.epoch)
        return write_gaps(self._sessions, self.camera_id, list(actions), fence=fence)

    # -- live view ---------------------------------------------------------------------------

    def _expire_viewers(self) -> None:
        if self.live_channel.viewers and time.monotonic() - self._viewers_at > VIEWERS_EXPIRE_S:
            self._set_viewers(0)

    def _set_viewers(self, n: int) -> None:
        channel = self.live_channel
        while channel.viewers < n:
            channel.add_viewer()
        while channel.viewers > n:
            channel.remove_viewer()

    def live(self, after_seq: int, viewers: int) -> LiveImage | None:
        """The latest masked JPEG newer than `after_seq` (None if none); `viewers` is how many
        watch it through the gateway (the worker encodes only while that is non-zero)."""
        self._viewers_at = time.monotonic()
        self._set_viewers(max(0, viewers))
        want = self.desired
        if want is None or not want.policy.may_view_live or self._worker is None:
            return None
        return self.live_channel.latest(after_seq)

    def preview(self, mode: int, timeout_s: float) -> LiveImage | None:
        """A mask preview (PNG) from the running worker; None if none runs or it is late."""
        if self._worker is None:
            return None
        request = self.live_channel.request_preview(mode)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            image = self.live_channel.preview(request)
            if image is not None:
                return image
            time.sleep(0.05)
        return None

    # -- status ------------------------------------------------------------------------------

    def want(self, digest: str | None) -> None:
        """What the reconcile loop expects this camera to run as (re-read when it differs)."""
        self._wanted_digest = digest

    def report(self, digest: str | None = None) -> RunnerReport:
        if digest is not None:
            self.want(digest)
        with self._lock:
            lease = self.lease
            return RunnerReport(
                view=self._view(),
                digest=self.digest,
                holder=self.holder,
                epoch=lease.epoch if lease is not None else None,
            )

    def _view(self) -> CameraStatusView:
        want = self.desired
        status = self._status.value if self._worker is not None else None
        last = status or self.last_status
        policy = want.policy if want is not None else None
        reasons: tuple[str, ...] = policy.reasons if policy is not None else ()
        last_error = self.last_error
        if self.lease is None:
            state, last_error = CameraState.starting, self._waiting
        elif not self._loaded:
            state = CameraState.starting
        elif want is None:
            state, last_error = CameraState.stopped, "camera decommissioned"
        elif want.config is None:
            state, last_error = CameraState.stopped, want.error
        elif want.policy.blocked:
            state = CameraState.blocked
        elif self._worker is None:
            state = CameraState.reconnecting if self.restarts else CameraState.starting
        elif status is None:
            state = CameraState.starting
        else:
            state = status.state
            last_error = status.last_error or (
                self.last_error if state is not CameraState.streaming else None
            )
            if state is CameraState.streaming:
                self.last_error = None
        return CameraStatusView(
            camera_id=self.camera_id,
            organisation_id=want.organisation_id if want is not None else None,
            state=state,
            reasons=reasons,
            may_view_live=bool(policy and policy.may_view_live),
            may_record=bool(policy and policy.may_record),
            recording=status.recording if status is not None else RecordingState.off,
            width=last.width if last is not None else None,
            height=last.height if last is not None else None,
            input_fps=status.input_fps if status is not None else 0.0,
            output_fps=status.output_fps if status is not None else 0.0,
            frames_in=status.frames_in if status is not None else 0,
            frames_out=status.frames_out if status is not None else 0,
            dropped_frames=status.dropped_frames if status is not None else 0,
            reconnects=(status.reconnects if status is not None else 0) + self.restarts,
            restarts=self.restarts,
            segments_written=status.segments_written if status is not None else 0,
            mask_fail_closed=status.mask_fail_closed if status is not None else 0,
            live_viewers=self.live_channel.viewers,
            live_stream=status.live_stream if status is not None else None,
            last_frame_at=last.last_frame_at if last is not None else None,
            last_error=clean_error(last_error),
            pid=self.pid,
            updated_at=status.sent_at if status is not None else None,
            node=self.node_id,
        )

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


SHM_DIR = Path("/dev/shm")


def _camera_channel(camera_id: int, pid: int) -> LiveChannel:
    """The runner's live channel, named after camera and process. A killed actor cannot unlink
    its shared memory (Ray ends its resource tracker with it): every runner that starts
    removes those of dead processes on its node."""
    remove_stale_channels(keep=pid)
    return LiveChannel.create(name=f"vms_cam{camera_id}_{pid}")


def remove_stale_channels(keep: int | None = None) -> int:
    """Unlink the live channels of camera runners that no longer run on this machine."""
    removed = 0
    if not SHM_DIR.is_dir():
        return 0
    for stale in SHM_DIR.glob("vms_cam*_*"):
        owner = stale.name.rsplit("_", 1)[-1]
        if owner.isdigit() and int(owner) != keep and not pid_alive(int(owner)):
            with contextlib.suppress(OSError):
                stale.unlink()
                removed += 1
    return removed


def _last_recorded(session: Session, camera_id: int, now: dt.datetime) -> dt.datetime | None:
    """End of the camera's last indexed segment (within LOOKBACK)."""
    start, end = now - LOOKBACK, now + dt.timedelta(minutes=1)
    count = retention_service.count_camera_segments(
        session=session, camera_id=camera_id, start=start, end=end
    )
    if not count:
        return None
    (last,) = retention_service.camera_segments(
        session=session, camera_id=camera_id, start=start, end=end, offset=count - 1, limit=1
    )
    return last.end
