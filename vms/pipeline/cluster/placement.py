"""Where camera actors go: one `camera_slots` unit each, no CPU reservation (a node's slots
are its capacity at full frame rate, see the README).

The gateway picks the node with the most free slots for a new actor (`least_loaded`) and asks
Ray for it with a soft node affinity: Ray holds the slot count (an actor never lands on a full
node) and falls back to any node with a free slot when that one is gone or full. Ray's own
SPREAD is round-robin, not load-aware, so a node that joins would not reliably get the next
cameras. The affinity also brings a crashed actor back on its node when the node lives (its
successor then proves the old process dead and takes the lease at once); the actors of a node
that dies are restarted wherever slots are free. Running actors stay where they are when a
node joins: vms does not rebalance (a move costs the camera a recording gap of a few seconds).
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from vms.pipeline.cluster.actor import CameraActor
from vms.pipeline.cluster.reconcile import actor_name

SLOT_RESOURCE = "camera_slots"
# Concurrent calls per actor: status, a live frame and a slow preview must not queue behind
# each other.
ACTOR_CONCURRENCY = 4

_remote: Any = None


def _actor_class() -> Any:
    global _remote
    if _remote is None:
        _remote = ray.remote(CameraActor)
    return _remote


def least_loaded(free: dict[str, int]) -> str | None:
    """The node with the most free slots (None if every node is full)."""
    best = max(sorted(free), key=lambda node: free[node], default=None)
    return best if best is not None and free[best] > 0 else None


def spawn(camera_id: int, namespace: str, node_id: str | None = None) -> Any:
    """The camera's actor, created if it does not exist yet (idempotent across gateways),
    preferably on `node_id`."""
    strategy: Any = "SPREAD"
    if node_id is not None:
        strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=True)
    return (
        _actor_class()
        .options(
            name=actor_name(camera_id),
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=ACTOR_CONCURRENCY,
            num_cpus=0,
            resources={SLOT_RESOURCE: 1},
            scheduling_strategy=strategy,
        )
        .remote(camera_id)
    )


def existing(camera_id: int, namespace: str) -> Any | None:
    try:
        return ray.get_actor(actor_name(camera_id), namespace=namespace)
    except ValueError:
        return None
