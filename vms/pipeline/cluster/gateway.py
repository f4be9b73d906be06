"""The gateway: a child process of the API that is the Ray driver.

It is a process of its own because a Ray driver does not survive its cluster's head: when the
head node (GCS) stays unreachable for `gcs_rpc_server_reconnect_timeout_s` (60 s by default),
Ray ends every process connected to it, drivers included. Here that costs the gateway, which
the API restarts with backoff, not the API (which goes on serving recordings, the registry and
the last known status, marked stale).

Every `reconcile_interval_s` it reads the registry (`read_desired`: a few queries however many
cameras), lists the camera actors that exist, and makes the two match (`reconcile.plan`):
creates missing actors, stops those whose camera is decommissioned or blocked, and asks every
actor for its report, passing the digest of the configuration it should run. Between rounds it
relays live frames and mask previews between the actors and the API's shared-memory channels
(only for cameras someone watches, at most `live_fps`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from retention import service as retention_service
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import make_engine, make_sessionmaker, session_scope, utcnow
from vms.pipeline import gaps
from vms.pipeline.backend import ClusterView, NodeView
from vms.pipeline.cluster import leases
from vms.pipeline.cluster.reconcile import camera_of, plan, wanted
from vms.pipeline.cluster.runner import RunnerReport
from vms.pipeline.desired import DesiredCamera, read_desired
from vms.pipeline.live import LiveChannel, LiveImage
from vms.pipeline.slots import CameraStatusView
from vms.pipeline.status import CameraState

logger = logging.getLogger(__name__)

TICK_S = 0.05
PREVIEW_TIMEOUT_S = 5.0
# How long a stopping actor gets to finalise its segment and write its gap before it is killed.
SHUTDOWN_GRACE_S = 15.0
# Consecutive failed rounds (Ray or the database unreachable) before the gateway gives up and
# lets the API start a fresh one.
MAX_FAILED_ROUNDS = 30

EXIT_NO_CLUSTER = 3


@dataclass(frozen=True)
class Snapshot:
    """What the gateway tells the API after every round."""

    views: dict[int, CameraStatusView]
    cluster: ClusterView
    reconcile_s: float  # how long the round took


@dataclass
class _Camera:
    handle: Any
    report: RunnerReport | None = None
    report_at: float = 0.0
    report_ref: Any = None
    report_sent: float = 0.0
    error: str | None = None
    live_ref: Any = None
    live_at: float = 0.0
    live_seq: int = 0
    viewers_sent: int = 0
    preview: tuple[int, Any] | None = None
    target: str | None = None  # the node asked for, until the actor reports where it runs


@dataclass
class _Stopping:
    camera_id: int
    handle: Any
    ref: Any
    deadline: float


@dataclass
class Gateway:
    settings: Settings
    reports: Any  # multiprocessing queue to the API
    cameras: dict[int, _Camera] = field(default_factory=dict)
    channels: dict[int, LiveChannel] = field(default_factory=dict)
    stopping: list[_Stopping] = field(default_factory=list)
    desired: dict[int, DesiredCamera] = field(default_factory=dict)
    failed_rounds: int = 0
    # Blocked cameras without an actor whose `policy` gap this gateway has seen to.
    policy_gaps: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        import ray

        self.ray = ray
        self._key = self.settings.secret_key_bytes()
        self._box = SecretBox(self._key)
        self._engine = make_engine(self.settings.db_url)
        self._sessions = make_sessionmaker(self._engine)
        self._interval = self.settings.pipeline.reconcile_interval_s
        self._namespace = self.settings.pipeline.ray_namespace
        # Asked for at twice the rate the actor makes pictures: asking at the rate itself drifts
        # against the actor's schedule and misses a picture every few.
        self._live_period = 0.5 / self.settings.pipeline.live_fps
        self._cluster = ClusterView(backend="ray", reachable=False, nodes=())

    def connect(self) -> None:
        self.ray.init(
            address=self.settings.ray_address or "auto",
            namespace=self._namespace,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        logger.info("pipeline gateway connected to the Ray cluster (namespace %s)", self._namespace)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()
        with contextlib.suppress(Exception):
            self.ray.shutdown()
        self._engine.dispose()

    # -- the loop ----------------------------------------------------------------------------

    def run(self, control: Connection) -> int:
        last_round = 0.0
        while True:
            if not self._drain_control(control):
                return 0
            now = time.monotonic()
            if now - last_round >= self._interval:
                last_round = now
                started = time.monotonic()
                try:
                    self.reconcile()
                    self.failed_rounds = 0
                except Exception:
                    self.failed_rounds += 1
                    logger.exception("pipeline gateway: reconcile round failed")
                    if self.failed_rounds >= MAX_FAILED_ROUNDS:
                        return EXIT_NO_CLUSTER
                self._publish(time.monotonic() - started)
            try:
                self._collect()
                self._relay_live()
                self._relay_previews()
                self._finish_stopping()
            except Exception:
                logger.exception("pipeline gateway: relay failed")
            time.sleep(TICK_S)

    def _drain_control(self, control: Connection) -> bool:
        try:
            while control.poll():
                message = control.recv()
                if message == "stop":
                    return False
                if isinstance(message, dict):
                    self._attach(message)
        except (EOFError, OSError):
            return False  # the API is gone
        return True

    def _attach(self, names: dict[int, str]) -> None:
        for camera_id in list(self.channels):
            if names.get(camera_id) != self.channels[camera_id].name:
                self.channels.pop(camera_id).close()
        for camera_id, name in names.items():
            if camera_id not in self.channels:
                try:
                    self.channels[camera_id] = LiveChannel.attach(name)
                except (FileNotFoundError, ValueError):
                    logger.warning("camera %s: live channel %s is gone", camera_id, name)

    # -- reconcile ---------------------------------------------------------------------------

    def reconcile(self) -> None:
        with session_scope(self._sessions) as session:
            desired = read_desired(
                session=session, settings=self.settings, box=self._box, at=utcnow()
            )
        names = self.ray.util.list_named_actors()
        existing = {c for c in map(camera_of, names) if c is not None}
        for camera_id in [c for c, cam in self.cameras.items() if cam.error and c not in existing]:
            # Its actor is gone for good (killed, or out of restarts): create it afresh.
            del self.cameras[camera_id]
        stopping = {s.camera_id for s in self.stopping}
        actions = plan(desired, (existing | set(self.cameras)) - stopping, self._key)
        self.desired = desired
        self._cluster = self._cluster_view()
        for stop in actions.stop:
            cam = self.cameras.pop(stop.camera_id, None)
            handle = cam.handle if cam is not None else self._existing(stop.camera_id)
            if handle is None:
                continue
            logger.info(
                "camera %s: stopping its actor (%s)",
                stop.camera_id,
                stop.reason or "decommissioned",
            )
            self.stopping.append(
                _Stopping(
                    stop.camera_id,
                    handle,
                    handle.shutdown.remote(stop.reason, stop.detail),
                    time.monotonic() + SHUTDOWN_GRACE_S,
                )
            )
        free = self._free_slots()
        for camera_id, digest in actions.digests.items():
            if camera_id in stopping:
                continue  # started again once its old actor is gone
            cam = self.cameras.get(camera_id)
            if cam is None:
                from vms.pipeline.cluster import placement

                target = None if camera_id in existing else placement.least_loaded(free)
                if target is not None:
                    free[target] -= 1
                handle = placement.spawn(camera_id, self._namespace, target)
                if camera_id not in existing:
                    logger.info(
                        "camera %s: actor created (node %s)", camera_id, (target or "any")[:12]
                    )
                cam = self.cameras[camera_id] = _Camera(handle, target=target)
            now = time.monotonic()
            if cam.report_ref is None:
                cam.report_ref = cam.handle.report.remote(digest)
                cam.report_sent = now
            elif now - cam.report_sent > 5 * self._interval and cam.report is not None:
                cam.error = "the camera actor does not answer"
        self._blocked_gaps(desired, existing | set(self.cameras) | stopping)

    def _blocked_gaps(self, desired: dict[int, DesiredCamera], with_actor: set[int]) -> None:
        """A camera that should record but is blocked, with no actor to say so: open its
        `policy` gap (an actor that stopped for the policy wrote it already; this covers a
        camera blocked since it was registered). Only while no one holds its lease."""
        todo = [
            (camera_id, want)
            for camera_id, want in desired.items()
            if want.expects_recording
            and want.config is not None
            and want.policy.blocked
            and camera_id not in with_actor
            and camera_id not in self.policy_gaps
        ]
        # Forget cameras gone from the registry or running again (a later block needs a gap).
        self.policy_gaps &= set(desired) - with_actor
        if not todo:
            return
        now = utcnow()
        with session_scope(self._sessions) as session:
            for camera_id, want in todo:
                held = leases.current(session=session, camera_id=camera_id)
                if held is None or not held.live(now):
                    retention_service.open_gap(
                        session=session,
                        camera_id=camera_id,
                        start=now,
                        reason=gaps.POLICY,
                        detail="; ".join(want.policy.reasons) or None,
                    )
                self.policy_gaps.add(camera_id)

    def _free_slots(self) -> dict[str, int]:
        """Camera slots left per live node, by the last placement the actors reported (and
        the nodes asked for on behalf of actors that have not reported yet)."""
        free = {
            n.node_id: n.camera_slots or 0
            for n in self._cluster.nodes
            if n.alive and (n.camera_slots or 0) > 0
        }
        for cam in self.cameras.values():
            node = cam.report.view.node if cam.report is not None else cam.target
            if node in free:
                free[node] -= 1
        return free

    def _existing(self, camera_id: int) -> Any | None:
        from vms.pipeline.cluster import placement

        return placement.existing(camera_id, self._namespace)

    def _collect(self) -> None:
        """Take in the reports that arrived."""
        pending = {c.report_ref: (cid, c) for cid, c in self.cameras.items() if c.report_ref}
        if not pending:
            return
        refs = list(pending)
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            camera_id, cam = pending[ref]
            cam.report_ref = None
            try:
                cam.report = self.ray.get(ref)
                cam.report_at = time.monotonic()
                cam.error = None
            except self.ray.exceptions.RayActorError as exc:
                cam.error = "the camera actor is restarting (its process or node was lost)"
                logger.info("camera %s: %s (%s)", camera_id, cam.error, type(exc).__name__)
            except self.ray.exceptions.RayError as exc:
                cam.error = f"the camera actor failed: {type(exc).__name__}"

    def _finish_stopping(self) -> None:
        keep: list[_Stopping] = []
        for item in self.stopping:
            ready, _ = self.ray.wait([item.ref], timeout=0)
            if not ready and time.monotonic() < item.deadline:
                keep.append(item)
                continue
            with contextlib.suppress(Exception):
                self.ray.kill(item.handle, no_restart=True)
            logger.info("camera %s: actor stopped", item.camera_id)
        self.stopping = keep

    # -- live view and previews --------------------------------------------------------------

    def _relay_live(self) -> None:
        now = time.monotonic()
        for camera_id, channel in self.channels.items():
            cam = self.cameras.get(camera_id)
            if cam is None:
                continue
            if cam.live_ref is not None:
                ready, _ = self.ray.wait([cam.live_ref], timeout=0)
                if not ready:
                    if now - cam.live_at < 5.0:
                        continue
                    cam.live_ref = None  # lost with a restarting actor: ask again
                else:
                    ref, cam.live_ref = cam.live_ref, None
                    try:
                        image: LiveImage | None = self.ray.get(ref)
                    except self.ray.exceptions.RayError:
                        image = None
                    if image is not None and image.seq != cam.live_seq:
                        cam.live_seq = image.seq
                        channel.publish(image.data, image.width, image.height, image.at)
            want = self.desired.get(camera_id)
            allowed = want is not None and want.policy.may_view_live
            viewers = channel.viewers if allowed else 0
            if viewers == 0 and cam.viewers_sent == 0:
                continue
            if now - cam.live_at < self._live_period and viewers == cam.viewers_sent:
                continue
            cam.live_ref = cam.handle.live.remote(cam.live_seq, viewers)
            cam.live_at = now
            cam.viewers_sent = viewers
            if not allowed:
                channel.clear()

    def _relay_previews(self) -> None:
        for camera_id, channel in self.channels.items():
            cam = self.cameras.get(camera_id)
            if cam is None:
                continue
            if cam.preview is not None:
                request, ref = cam.preview
                ready, _ = self.ray.wait([ref], timeout=0)
                if ready:
                    cam.preview = None
                    try:
                        image: LiveImage | None = self.ray.get(ref)
                    except self.ray.exceptions.RayError:
                        image = None
                    if image is not None:
                        channel.publish_preview(request, image.data, image.width, image.height)
                continue
            pending = channel.pending_preview()
            if pending is not None:
                request, mode = pending
                cam.preview = (request, cam.handle.preview.remote(mode, PREVIEW_TIMEOUT_S))

    # -- what the API sees -------------------------------------------------------------------

    def _views(self) -> dict[int, CameraStatusView]:
        views: dict[int, CameraStatusView] = {}
        for camera_id, want in self.desired.items():
            cam = self.cameras.get(camera_id)
            policy = want.policy
            if not wanted(want) or cam is None:
                blocked = want.config is not None
                views[camera_id] = CameraStatusView(
                    camera_id=camera_id,
                    organisation_id=want.organisation_id,
                    state=CameraState.blocked if blocked else CameraState.stopped,
                    reasons=policy.reasons,
                    may_view_live=policy.may_view_live,
                    may_record=policy.may_record,
                    last_error=None if blocked else want.error,
                )
                continue
            if cam.report is None:
                view = CameraStatusView(
                    camera_id=camera_id,
                    organisation_id=want.organisation_id,
                    state=CameraState.starting,
                    reasons=policy.reasons,
                    may_view_live=policy.may_view_live,
                    may_record=policy.may_record,
                    last_error=cam.error or "waiting for a node with a free camera slot",
                )
            else:
                view = dataclasses.replace(
                    cam.report.view,
                    organisation_id=want.organisation_id,
                    # The registry's word, not the actor's last one, decides what may be shown.
                    may_view_live=policy.may_view_live and cam.report.view.may_view_live,
                    live_viewers=self.channels[camera_id].viewers
                    if camera_id in self.channels
                    else 0,
                )
                if cam.error is not None:
                    view = dataclasses.replace(
                        view, state=CameraState.reconnecting, last_error=cam.error
                    )
            views[camera_id] = view
        return views

    def _cluster_view(self) -> ClusterView:
        per_node: dict[str, list[int]] = {}
        fresh = 3 * self._interval + 1.0
        now = time.monotonic()
        placed: set[int] = set()
        for camera_id, cam in self.cameras.items():
            report = cam.report
            if report is None or report.view.node is None or cam.error is not None:
                continue
            if now - cam.report_at <= fresh:
                per_node.setdefault(report.view.node, []).append(camera_id)
                placed.add(camera_id)
        nodes = []
        # ray.nodes() has no annotations.
        for node in self.ray.nodes():  # type: ignore[no-untyped-call]
            node_id = node["NodeID"]
            resources = node.get("Resources", {})
            slots = resources.get("camera_slots")
            nodes.append(
                NodeView(
                    node_id=node_id,
                    address=str(node.get("NodeManagerAddress", "")),
                    alive=bool(node.get("Alive")),
                    camera_slots=int(slots) if slots is not None else 0,
                    cameras=tuple(sorted(per_node.get(node_id, []))),
                    head="node:__internal_head__" in resources,
                )
            )
        unplaced = tuple(sorted(set(self.cameras) - placed))
        return ClusterView(
            backend="ray",
            reachable=True,
            nodes=tuple(nodes),
            unplaced=unplaced,
            updated_at=utcnow(),
            detail=self.settings.ray_address or "auto",
        )

    def _publish(self, took: float) -> None:
        snapshot = Snapshot(views=self._views(), cluster=self._cluster, reconcile_s=took)
        with contextlib.suppress(Exception):
            self.reports.put_nowait(snapshot)


def run_gateway(settings: Settings, control: Connection, reports: Any, log_level: int) -> None:
    """Target of the gateway process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s %(levelname)s [gateway %(process)d] %(name)s: %(message)s",
    )
    gateway = Gateway(settings, reports)
    code = EXIT_NO_CLUSTER
    try:
        gateway.connect()
        code = gateway.run(control)
    except Exception:
        logger.exception("pipeline gateway failed")
    finally:
        gateway.close()
        with contextlib.suppress(Exception):
            reports.close()
            reports.join_thread()
    sys.exit(code)
