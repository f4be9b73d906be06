"""The reconcile decision, pure: the registry's desired cameras against the camera actors that
exist, as actions (start, stop with the gap reason, and the digest each actor must run).

Only cameras whose policy allows live view or recording and whose configuration is usable get
an actor: a blocked camera holds no slot on any node. Its actor, if it had one, is stopped with
the reason that its gap gets (`policy`); a decommissioned camera's actor closes its gap (it
owes no more footage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vms.pipeline import gaps
from vms.pipeline.cluster.camera import camera_digest
from vms.pipeline.desired import DesiredCamera

ACTOR_PREFIX = "vms-camera-"


def actor_name(camera_id: int) -> str:
    return f"{ACTOR_PREFIX}{camera_id}"


def camera_of(name: str) -> int | None:
    """The camera id of an actor name of ours; None for any other actor."""
    if not name.startswith(ACTOR_PREFIX):
        return None
    tail = name.removeprefix(ACTOR_PREFIX)
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True, slots=True)
class Stop:
    camera_id: int
    reason: str | None  # the gap it leaves (None: decommissioned, owes no footage)
    detail: str | None = None


@dataclass(frozen=True)
class Plan:
    start: list[int] = field(default_factory=list)
    stop: list[Stop] = field(default_factory=list)
    digests: dict[int, str] = field(default_factory=dict)  # every camera that should run


def wanted(desired: DesiredCamera) -> bool:
    return desired.config is not None and not desired.policy.blocked


def plan(desired: Mapping[int, DesiredCamera], running: Iterable[int], key: bytes) -> Plan:
    """What to do so the running actors match `desired`."""
    out = Plan()
    have = set(running)
    for camera_id, want in desired.items():
        if wanted(want):
            out.digests[camera_id] = camera_digest(want, key)
            if camera_id not in have:
                out.start.append(camera_id)
    for camera_id in sorted(have - set(out.digests)):
        want_or_none = desired.get(camera_id)
        if want_or_none is None:
            out.stop.append(Stop(camera_id, None))
        elif want_or_none.config is None:
            out.stop.append(Stop(camera_id, gaps.RECORDING_ERROR, want_or_none.error))
        else:
            why = "; ".join(want_or_none.policy.reasons) or None
            out.stop.append(Stop(camera_id, gaps.POLICY, why))
    return out
