"""The seam between the API and whatever runs the camera workers.

`PipelineSupervisor` (workers as child processes of this server) and `RaySupervisor` (camera
actors on a Ray cluster, `VMS_PIPELINE__BACKEND=ray`) both satisfy `PipelineBackend`; the
routes, the metrics and the web pages know nothing else. Every method answers from state kept
in this process (status snapshots, shared-memory live channels), so an async route may call
them without waiting on another machine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from vms.pipeline.live import LiveImage
from vms.pipeline.slots import CameraStatusView


@dataclass(frozen=True, slots=True)
class NodeView:
    """One machine that runs (or could run) camera workers."""

    node_id: str
    address: str
    alive: bool
    camera_slots: int | None  # cameras it may carry (None: not limited, the local backend)
    cameras: tuple[int, ...]
    head: bool = False


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What `GET /api/v1/cluster` shows."""

    backend: str  # "local" | "ray"
    reachable: bool  # the cluster answered recently (always true for the local backend)
    nodes: tuple[NodeView, ...]
    unplaced: tuple[int, ...] = ()  # cameras that should run but have no node (no free slot)
    updated_at: dt.datetime | None = None
    detail: str | None = None


class PipelineBackend(Protocol):
    """start()/stop() from the app's lifespan; everything else is safe from any thread."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def running(self) -> bool: ...

    def camera_ids(self) -> list[int]: ...

    def status(self, camera_id: int) -> CameraStatusView: ...

    def statuses(self) -> list[CameraStatusView]: ...

    def live_allowed(self, camera_id: int) -> bool: ...

    def add_viewer(self, camera_id: int) -> bool: ...

    def remove_viewer(self, camera_id: int) -> None: ...

    def latest_frame(self, camera_id: int, after_seq: int = 0) -> LiveImage | None: ...

    def request_preview(self, camera_id: int, mode: int) -> int | None: ...

    def preview(self, camera_id: int, request_id: int) -> LiveImage | None: ...

    def worker_pid(self, camera_id: int) -> int | None: ...

    def cluster(self) -> ClusterView: ...
