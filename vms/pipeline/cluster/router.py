"""`GET /api/v1/cluster`: which nodes run camera workers, their capacity, cameras per node."""

from __future__ import annotations

from fastapi import APIRouter, Request

from vms.core.deps import PrincipalDep, SettingsDep
from vms.pipeline import service
from vms.pipeline.backend import PipelineBackend
from vms.pipeline.cluster.schemas import ClusterRead, NodeRead

router = APIRouter(prefix="/api/v1")


@router.get("/cluster", response_model=ClusterRead, tags=["pipeline"])
def cluster(request: Request, principal: PrincipalDep, settings: SettingsDep) -> ClusterRead:
    """The nodes that run camera workers, their camera slots and the cameras on each (admin:
    it spans every organisation)."""
    service.authorise_metrics(principal)
    sup: PipelineBackend | None = getattr(request.app.state, "pipeline", None)
    if sup is None or not sup.running:
        return ClusterRead(
            backend=settings.pipeline.backend,
            running=False,
            reachable=False,
            nodes=[],
            capacity=None,
            cameras=0,
            unplaced=[],
            updated_at=None,
            detail="the video pipeline is not running on this server",
        )
    view = sup.cluster()
    live = [n for n in view.nodes if n.alive]
    slots = [n.camera_slots for n in live]
    return ClusterRead(
        backend=view.backend,
        running=True,
        reachable=view.reachable,
        nodes=[
            NodeRead(
                node_id=n.node_id,
                address=n.address,
                alive=n.alive,
                head=n.head,
                camera_slots=n.camera_slots,
                cameras=list(n.cameras),
            )
            for n in view.nodes
        ],
        capacity=None if any(s is None for s in slots) else sum(s or 0 for s in slots),
        cameras=sum(len(n.cameras) for n in view.nodes),
        unplaced=list(view.unplaced),
        updated_at=view.updated_at,
        detail=view.detail,
    )
