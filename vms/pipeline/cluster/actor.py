"""The camera actor: a detached, named Ray actor per camera (`vms-camera-<id>`), restarted by
Ray whenever its process or its node dies (`max_restarts=-1`). It needs one `camera_slots`
unit of its node and no CPU reservation (the slots are the capacity, see placement).

Its settings come from the node's own environment (`VMS_DATABASE_URL`, `VMS_SECRET_KEY`,
`VMS_DATA_DIR` on the shared volume, `VMS_PIPELINE__*`), the way `vms serve` reads them: the
database URL and the installation key never travel through Ray (whose control store and
dashboard show actor arguments), and the camera's configuration is read from the database in
every incarnation, never captured from the first one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import cv2
import ray

from vms.core.config import Settings
from vms.pipeline.cluster.leases import LeaseState
from vms.pipeline.cluster.runner import CameraRunner, RunnerReport
from vms.pipeline.live import LiveImage

logger = logging.getLogger(__name__)


class CameraActor:
    """Methods are called by the gateway; `max_concurrency` lets a slow preview wait without
    holding up status and live frames."""

    def __init__(self, camera_id: int) -> None:
        settings = Settings()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        )
        # Cameras, not OpenCV's thread pool, fill the cores.
        cv2.setNumThreads(1)
        context = ray.get_runtime_context()
        self._restarted = context.was_current_actor_reconstructed
        # Ray starts actor processes from the node's raylet: a new parent means it died.
        raylet = os.getppid()
        self.runner = CameraRunner(
            camera_id,
            settings,
            node_id=context.get_node_id(),
            holder_gone=self._holder_gone,
            node_alive=lambda: os.getppid() == raylet,
        )
        if self._restarted:
            logger.warning("camera %s: actor restarted by Ray on this node", camera_id)
        self.runner.start()

    def _holder_gone(self, held: LeaseState) -> bool:
        """Whether the lease's holder is certainly dead, so we need not wait for its lease to
        expire: a process of this node that no longer exists, or, when Ray restarted this
        actor, a predecessor on a node Ray still counts as alive (Ray restarts an actor on a
        live node only once that node's raylet saw the old process die). A node Ray declared
        dead may only be cut off: then the lease runs out first."""
        if self.runner.local_holder_gone(held):
            return True
        if not self._restarted or held.node_id in (None, self.runner.node_id):
            return False
        try:
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}  # type: ignore[no-untyped-call]
        except Exception:
            return False
        return held.node_id in alive

    def report(self, digest: str | None) -> RunnerReport:
        return self.runner.report(digest)

    def live(self, after_seq: int, viewers: int) -> LiveImage | None:
        return self.runner.live(after_seq, viewers)

    def preview(self, mode: int, timeout_s: float) -> LiveImage | None:
        return self.runner.preview(mode, timeout_s)

    def shutdown(self, reason: str | None, detail: str | None) -> bool:
        """Stop cleanly before the gateway kills the actor (no restart)."""
        self.runner.shutdown(reason, detail)
        return True

    def where(self) -> dict[str, Any]:
        return {"node": self.runner.node_id, "pid": os.getpid(), "holder": self.runner.holder}
