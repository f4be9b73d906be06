"""Camera leases in the database: no camera is recorded twice.

Ray restarts a camera's actor when its process or its node dies, but a node that is only cut off
(a network partition, a process frozen for a while) may still run the old actor. Every
recording write of a camera actor (segment index rows, gaps) therefore carries the camera's
lease epoch, and is refused in the same transaction once a newer epoch exists:

- `acquire`: free, expired or explicitly superseded (`steal_epoch`, used when the old holder is
  known to be dead) leases are taken with `epoch + 1`; a live lease of someone else raises
  `LeaseHeld`;
- `renew`: the holder extends its lease every `ttl / 3`; `LeaseLost` once superseded;
- `check`: the fence, run inside the transaction of every write (row-locked on PostgreSQL, so
  a takeover cannot slip in between check and write; SQLite serialises writers anyway);
- `release`: a clean stop frees the lease, so the next holder knows there was no crash.

Times are the nodes' wall clocks (UTC): run NTP on every node; the TTL must be much larger than
the clock skew.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vms.pipeline.cluster.models import CameraLease


class LeaseHeld(Exception):
    """Another holder has a live lease on the camera."""

    def __init__(self, state: LeaseState) -> None:
        super().__init__(
            f"camera {state.camera_id} is held by {state.holder} until "
            f"{state.expires_at.isoformat()}"
        )
        self.state = state


class LeaseLost(Exception):
    """The lease was taken over (a newer epoch exists): this holder must not write."""


@dataclass(frozen=True, slots=True)
class LeaseState:
    camera_id: int
    epoch: int
    holder: str | None  # None: released cleanly
    node_id: str | None
    pid: int | None
    acquired_at: dt.datetime
    renewed_at: dt.datetime
    expires_at: dt.datetime

    def live(self, now: dt.datetime) -> bool:
        return self.holder is not None and self.expires_at > now


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease this holder got: its epoch is the fencing token of its writes."""

    camera_id: int
    holder: str
    epoch: int
    expires_at: dt.datetime
    previous: LeaseState | None  # the row before this acquisition (None: first ever)

    @property
    def after_crash(self) -> bool:
        """The previous holder never released: it died (or was cut off) while running."""
        return self.previous is not None and self.previous.holder not in (None, self.holder)


def _state(row: CameraLease) -> LeaseState:
    return LeaseState(
        camera_id=row.camera_id,
        epoch=row.epoch,
        holder=row.holder,
        node_id=row.node_id,
        pid=row.pid,
        acquired_at=row.acquired_at,
        renewed_at=row.renewed_at,
        expires_at=row.expires_at,
    )


def _locked(session: Session, camera_id: int) -> CameraLease | None:
    return session.scalars(
        select(CameraLease)
        .where(CameraLease.camera_id == camera_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def current(*, session: Session, camera_id: int) -> LeaseState | None:
    """The camera's lease row as it is now (None if the camera never ran on the cluster)."""
    row = session.get(CameraLease, camera_id, populate_existing=True)
    return _state(row) if row is not None else None


def list_leases(*, session: Session) -> dict[int, LeaseState]:
    """Every camera's lease (the cluster view)."""
    return {row.camera_id: _state(row) for row in session.scalars(select(CameraLease))}


def acquire(
    *,
    session: Session,
    camera_id: int,
    holder: str,
    node_id: str | None,
    pid: int | None,
    ttl_s: float,
    now: dt.datetime,
    steal_epoch: int | None = None,
) -> Lease:
    """Take the camera's lease with a new epoch; `LeaseHeld` if someone else holds it live.

    `steal_epoch` takes over a live lease of exactly that epoch: for a caller that knows its
    holder is dead (a process gone on this very node)."""
    expires = now + dt.timedelta(seconds=ttl_s)
    row = _locked(session, camera_id)
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    CameraLease(
                        camera_id=camera_id,
                        epoch=1,
                        holder=holder,
                        node_id=node_id,
                        pid=pid,
                        acquired_at=now,
                        renewed_at=now,
                        expires_at=expires,
                    )
                )
        except IntegrityError:
            # Another holder inserted the first row at the same moment: it won.
            row = _locked(session, camera_id)
            if row is None:
                raise
            raise LeaseHeld(_state(row)) from None
        return Lease(camera_id, holder, 1, expires, None)
    before = _state(row)
    if row.holder != holder and before.live(now) and row.epoch != steal_epoch:
        raise LeaseHeld(before)
    row.epoch += 1
    row.holder = holder
    row.node_id = node_id
    row.pid = pid
    row.acquired_at = now
    row.renewed_at = now
    row.expires_at = expires
    session.flush()
    return Lease(camera_id, holder, row.epoch, expires, before)


def renew(
    *, session: Session, camera_id: int, holder: str, epoch: int, ttl_s: float, now: dt.datetime
) -> dt.datetime:
    """Extend the lease; `LeaseLost` if it is no longer this holder's epoch."""
    row = _locked(session, camera_id)
    if row is None or row.epoch != epoch or row.holder != holder:
        raise LeaseLost(f"camera {camera_id}: lease epoch {epoch} of {holder} was superseded")
    row.renewed_at = now
    row.expires_at = now + dt.timedelta(seconds=ttl_s)
    session.flush()
    return row.expires_at


def release(*, session: Session, camera_id: int, holder: str, epoch: int, now: dt.datetime) -> bool:
    """Free the lease after a clean stop; False if it was no longer ours."""
    row = _locked(session, camera_id)
    if row is None or row.epoch != epoch or row.holder != holder:
        return False
    row.holder = None
    row.renewed_at = now
    row.expires_at = now
    session.flush()
    return True


def check(*, session: Session, camera_id: int, holder: str, epoch: int) -> None:
    """The fence: raise `LeaseLost` unless `epoch` is still the camera's current lease of
    `holder`. Run it inside the transaction of the write it guards."""
    row = _locked(session, camera_id)
    if row is None or row.epoch != epoch or row.holder != holder:
        raise LeaseLost(
            f"camera {camera_id}: write with lease epoch {epoch} refused "
            f"(current epoch {row.epoch if row is not None else None})"
        )


@dataclass(frozen=True, slots=True)
class Fence:
    """A holder's fencing token, callable inside a write's transaction."""

    camera_id: int
    holder: str
    epoch: int

    def __call__(self, session: Session) -> None:
        check(session=session, camera_id=self.camera_id, holder=self.holder, epoch=self.epoch)
