"""`RaySupervisor`: the API's side of the Ray backend, with the same interface as the local
`PipelineSupervisor` (`vms.pipeline.backend.PipelineBackend`).

It runs no camera itself. It owns the gateway process (the Ray driver, restarted with backoff
when it ends, e.g. while the cluster's head is down), keeps the latest status snapshot the
gateway sends, and one shared-memory `LiveChannel` per camera, through which the gateway hands
over the masked JPEGs and previews it fetched from the camera's actor: the routes read frames
and count viewers exactly as with local workers, and never wait on another machine.

Stopping the API stops the gateway, not the cameras: the actors are detached and go on
recording (their leases and gaps are in the database).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import queue
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from vms.core.config import Settings
from vms.core.db import utcnow
from vms.pipeline.backend import ClusterView
from vms.pipeline.live import LiveChannel, LiveImage
from vms.pipeline.restart import Backoff
from vms.pipeline.slots import CameraStatusView
from vms.pipeline.status import CameraState

logger = logging.getLogger(__name__)

TICK_S = 0.05
STOP_GRACE_S = 15.0


class RaySupervisor:
    """start()/stop() from the app's lifespan; read methods are safe from any thread."""

    def __init__(self, settings: Settings, **_ignored: Any) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.RLock()
        self._views: dict[int, CameraStatusView] = {}
        self._cluster = ClusterView(backend="ray", reachable=False, nodes=())
        self._snapshot_mono = 0.0
        self.reconcile_s: float | None = None
        self._channels: dict[int, LiveChannel] = {}
        self._sent: dict[int, str] | None = None
        self._process: BaseProcess | None = None
        self._control: Connection | None = None
        self._reports: Any = None
        self._backoff = Backoff(initial=1.0, maximum=30.0, healthy_after=60.0)
        self._next_start = 0.0
        self._started_mono = 0.0
        self.gateway_restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        interval = settings.pipeline.reconcile_interval_s
        # Without a snapshot for this long, what we show is marked stale.
        self._stale_after = max(5.0, 5 * interval)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._reports = self._ctx.Queue()
        self._thread = threading.Thread(target=self._loop, name="pipeline-ray", daemon=True)
        self._thread.start()
        logger.info(
            "pipeline: Ray backend, cluster %s, namespace %s",
            self.settings.ray_address or "auto",
            self.settings.pipeline.ray_namespace,
        )

    def stop(self) -> None:
        """Stop the gateway; the camera actors go on recording."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        self._stop_gateway()
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
        if self._reports is not None:
            self._reports.close()
            self._reports.join_thread()
            self._reports = None
        logger.info("pipeline: Ray backend stopped (camera actors keep running)")

    def _start_gateway(self) -> None:
        from vms.pipeline.cluster.gateway import run_gateway

        recv, send = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=run_gateway,
            args=(self.settings, recv, self._reports, logging.getLogger().getEffectiveLevel()),
            name="vms-pipeline-gateway",
            daemon=True,
        )
        try:
            process.start()
        finally:
            recv.close()
        self._process, self._control = process, send
        self._sent = None
        self._started_mono = time.monotonic()
        logger.info("pipeline: gateway started (pid %s)", process.pid)

    def _stop_gateway(self) -> None:
        process, control = self._process, self._control
        self._process = self._control = None
        if process is None:
            return
        if control is not None:
            with contextlib.suppress(OSError, ValueError):
                control.send("stop")
        process.join(timeout=STOP_GRACE_S)
        if process.is_alive():
            process.terminate()
            process.join(timeout=3)
        if process.is_alive():
            process.kill()
            process.join(timeout=1)
        if control is not None:
            control.close()

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("pipeline: Ray backend tick failed")
            self._stop.wait(TICK_S)

    def tick(self) -> None:
        now = time.monotonic()
        process = self._process
        if process is not None and not process.is_alive():
            process.join(timeout=0)
            self._backoff.ran_for(now - self._started_mono)
            delay = self._backoff.failed()
            logger.warning(
                "pipeline: gateway exited with code %s; restarting in %.1fs",
                process.exitcode,
                delay,
            )
            if self._control is not None:
                self._control.close()
            self._process = self._control = None
            self._next_start = now + delay
            self.gateway_restarts += 1
        if self._process is None and now >= self._next_start:
            try:
                self._start_gateway()
            except Exception:
                self._next_start = now + self._backoff.failed()
                logger.exception("pipeline: cannot start the gateway; retrying")
        self._drain()
        self._sync_channels()

    def _drain(self) -> None:
        latest = None
        while True:
            try:
                latest = self._reports.get_nowait()
            except queue.Empty:
                break
            except (OSError, ValueError, EOFError):
                break
        if latest is None:
            return
        with self._lock:
            self._views = dict(latest.views)
            self._cluster = latest.cluster
            self._snapshot_mono = time.monotonic()
            self.reconcile_s = latest.reconcile_s

    def _sync_channels(self) -> None:
        """One live channel per camera the gateway reports; the gateway attaches them."""
        with self._lock:
            for camera_id in self._views:
                if camera_id not in self._channels:
                    self._channels[camera_id] = LiveChannel.create()
            for camera_id in list(self._channels):
                if camera_id not in self._views:
                    self._channels.pop(camera_id).close()
            names = {c: ch.name for c, ch in self._channels.items()}
        if names != self._sent and self._control is not None:
            try:
                self._control.send(names)
                self._sent = names
            except (OSError, ValueError):
                pass

    # -- reads for the API -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def gateway_pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def _fresh(self) -> bool:
        return time.monotonic() - self._snapshot_mono <= self._stale_after

    def _stale(self, view: CameraStatusView) -> CameraStatusView:
        if self._fresh():
            return view
        age = time.monotonic() - self._snapshot_mono if self._snapshot_mono else None
        why = (
            f"no report from the cluster for {age:.0f}s (last known state shown)"
            if age is not None
            else "not connected to the cluster yet"
        )
        return dataclasses.replace(view, last_error=why)

    def camera_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._views)

    def status(self, camera_id: int) -> CameraStatusView:
        with self._lock:
            view = self._views.get(camera_id)
            if view is None:
                return CameraStatusView(
                    camera_id=camera_id, organisation_id=None, state=CameraState.stopped
                )
            return self._stale(view)

    def statuses(self) -> list[CameraStatusView]:
        with self._lock:
            return [self._stale(v) for v in self._views.values()]

    def live_allowed(self, camera_id: int) -> bool:
        with self._lock:
            view = self._views.get(camera_id)
            return bool(view and view.may_view_live)

    def add_viewer(self, camera_id: int) -> bool:
        with self._lock:
            channel = self._channels.get(camera_id)
            if channel is None:
                return False
            channel.add_viewer()
            return True

    def remove_viewer(self, camera_id: int) -> None:
        with self._lock:
            channel = self._channels.get(camera_id)
            if channel is not None:
                channel.remove_viewer()

    def latest_frame(self, camera_id: int, after_seq: int = 0) -> LiveImage | None:
        with self._lock:
            view = self._views.get(camera_id)
            channel = self._channels.get(camera_id)
            if view is None or channel is None or not view.may_view_live:
                return None
            return channel.latest(after_seq)

    def request_preview(self, camera_id: int, mode: int) -> int | None:
        """Ask the camera's actor for a preview; None if no worker of it streams."""
        with self._lock:
            view = self._views.get(camera_id)
            channel = self._channels.get(camera_id)
            if view is None or channel is None or view.state is not CameraState.streaming:
                return None
            return channel.request_preview(mode)

    def preview(self, camera_id: int, request_id: int) -> LiveImage | None:
        with self._lock:
            channel = self._channels.get(camera_id)
            return channel.preview(request_id) if channel is not None else None

    def worker_pid(self, camera_id: int) -> int | None:
        """The pid of the camera's actor process, on its node (see `status().node`)."""
        with self._lock:
            view = self._views.get(camera_id)
            if view is None or view.state in (CameraState.blocked, CameraState.stopped):
                return None
            return view.pid

    def cluster(self) -> ClusterView:
        with self._lock:
            view = self._cluster
            if self._fresh():
                return view
            return dataclasses.replace(
                view,
                reachable=False,
                detail="no report from the cluster recently; last known placement shown",
                updated_at=view.updated_at or utcnow(),
            )
