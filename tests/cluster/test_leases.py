"""Camera leases: acquisition, expiry, takeover, and the fence every recording write carries."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from retention.models import Gap, Segment
from tests.factories import Factory
from vms.pipeline.cluster import leases
from vms.pipeline.gaps import CloseGap, OpenGap
from vms.pipeline.index import DbSegmentIndex, write_gaps
from vms.pipeline.recorder import SegmentInfo, SegmentRefused

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TTL = 10.0


def take(
    session: Session,
    camera_id: int,
    holder: str,
    at: dt.datetime,
    *,
    node_id: str = "node-a",
    steal_epoch: int | None = None,
) -> leases.Lease:
    return leases.acquire(
        session=session,
        camera_id=camera_id,
        holder=holder,
        node_id=node_id,
        pid=100,
        ttl_s=TTL,
        now=at,
        steal_epoch=steal_epoch,
    )


def renew(session: Session, camera_id: int, holder: str, epoch: int, at: dt.datetime) -> None:
    leases.renew(
        session=session, camera_id=camera_id, holder=holder, epoch=epoch, ttl_s=TTL, now=at
    )


def test_first_holder_gets_epoch_one_and_a_live_lease_is_not_taken(
    session: Session, factory: Factory
) -> None:
    camera = factory.camera()
    first = take(session, camera.id, "a", T0)
    assert (first.epoch, first.previous, first.after_crash) == (1, None, False)
    with pytest.raises(leases.LeaseHeld, match="held by a"):
        take(session, camera.id, "b", T0 + dt.timedelta(seconds=TTL - 1))
    # Renewal keeps it alive past the first expiry.
    renew(session, camera.id, "a", 1, T0 + dt.timedelta(seconds=8))
    with pytest.raises(leases.LeaseHeld):
        take(session, camera.id, "b", T0 + dt.timedelta(seconds=TTL + 1))


def test_an_expired_lease_is_taken_with_the_next_epoch_and_the_old_holder_is_fenced(
    session: Session, factory: Factory
) -> None:
    camera = factory.camera()
    take(session, camera.id, "a", T0)
    later = T0 + dt.timedelta(seconds=TTL + 0.1)
    second = take(session, camera.id, "b", later, node_id="node-b")
    assert second.epoch == 2
    assert second.after_crash  # "a" never released
    assert second.previous is not None
    assert second.previous.holder == "a"
    with pytest.raises(leases.LeaseLost):
        leases.check(session=session, camera_id=camera.id, holder="a", epoch=1)
    with pytest.raises(leases.LeaseLost):
        renew(session, camera.id, "a", 1, later)
    leases.check(session=session, camera_id=camera.id, holder="b", epoch=2)
    assert not leases.release(session=session, camera_id=camera.id, holder="a", epoch=1, now=later)


def test_steal_takes_only_the_epoch_named(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    take(session, camera.id, "a", T0)
    with pytest.raises(leases.LeaseHeld):
        take(session, camera.id, "b", T0, steal_epoch=7)
    assert take(session, camera.id, "b", T0, steal_epoch=1).epoch == 2


def test_a_clean_release_is_no_crash(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    take(session, camera.id, "a", T0)
    assert leases.release(session=session, camera_id=camera.id, holder="a", epoch=1, now=T0)
    state = leases.current(session=session, camera_id=camera.id)
    assert state is not None
    assert state.holder is None
    assert not state.live(T0)
    nxt = take(session, camera.id, "b", T0 + dt.timedelta(seconds=1))
    assert nxt.epoch == 2
    assert not nxt.after_crash
    assert set(leases.list_leases(session=session)) >= {camera.id}


def _info(camera_id: int, start: dt.datetime, path: str) -> SegmentInfo:
    return SegmentInfo(
        camera_id=camera_id,
        start=start,
        end=start + dt.timedelta(seconds=1),
        path=path,
        size_bytes=10,
        sha256="0" * 64,
        mask_plan_hash=None,
        codec="h264",
        width=640,
        height=360,
        frames=25,
    )


def test_index_and_gap_writes_with_a_stale_epoch_are_refused(
    session: Session, factory: Factory
) -> None:
    camera = factory.camera()
    old = take(session, camera.id, "a", T0)
    # Writers get sessions joined to the test's transaction (rolled back at the end).
    writers = sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint")
    base = f"recordings/{camera.id}"
    fence_old = leases.Fence(camera.id, "a", old.epoch)
    index_old = DbSegmentIndex(writers, camera.organisation_id, fence=fence_old)
    index_old.add(_info(camera.id, T0, f"{base}/a.mp4"))
    assert write_gaps(writers, camera.id, [OpenGap(T0, "camera_down", None)], fence=fence_old)

    new = take(session, camera.id, "b", T0 + dt.timedelta(seconds=TTL + 1))
    with pytest.raises(leases.LeaseLost):
        index_old.add(_info(camera.id, T0 + dt.timedelta(seconds=20), f"{base}/b.mp4"))
    late = [CloseGap(T0 + dt.timedelta(seconds=30))]
    assert not write_gaps(writers, camera.id, late, fence=fence_old)
    fence_new = leases.Fence(camera.id, "b", new.epoch)
    DbSegmentIndex(writers, camera.organisation_id, fence=fence_new).add(
        _info(camera.id, T0 + dt.timedelta(seconds=40), f"{base}/c.mp4")
    )

    paths = session.scalars(select(Segment.path).where(Segment.camera_id == camera.id)).all()
    assert sorted(paths) == [f"{base}/a.mp4", f"{base}/c.mp4"]
    gaps = session.scalars(select(Gap).where(Gap.camera_id == camera.id)).all()
    assert [(g.reason, g.end) for g in gaps] == [("camera_down", None)]


def test_a_refused_segment_already_indexed_by_the_successor_keeps_its_file(
    session: Session, factory: Factory
) -> None:
    """The old holder renamed a segment just before it was cut off; the successor's crash
    recovery indexed that file. The old holder's own index write is refused, but must not make
    the recorder delete a file that now has a row."""
    from vms.pipeline.cluster.runner import FencedSegmentIndex

    camera = factory.camera()
    old = take(session, camera.id, "a", T0)
    writers = sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint")
    new = take(session, camera.id, "b", T0 + dt.timedelta(seconds=TTL + 1))
    info = _info(camera.id, T0, f"recordings/{camera.id}/renamed.mp4")
    DbSegmentIndex(writers, camera.organisation_id, leases.Fence(camera.id, "b", new.epoch)).add(
        info
    )
    stale = FencedSegmentIndex(writers, camera.organisation_id, leases.Fence(camera.id, "a", 1))
    assert old.epoch == 1
    stale.add(info)  # no error: the row is there, the file stays
    assert stale.refused == 1
    with pytest.raises(SegmentRefused):
        stale.add(_info(camera.id, T0 + dt.timedelta(seconds=5), f"recordings/{camera.id}/x.mp4"))
    assert stale.refused == 2
