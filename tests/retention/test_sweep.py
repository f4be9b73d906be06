"""The sweep, with an injected clock: what goes, when, and what proves it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, delete, event, func, insert, select
from sqlalchemy.orm import Session

from registry.models import CameraMode, CameraStatus
from retention import service
from retention.locking import LOCK_NAME, exclusive
from retention.models import RetentionSweep, Segment, SegmentState
from retention.paths import RECORDINGS
from retention.receipts import Receipt
from retention.sweep import SweepHooks
from tests.factories import Factory
from vms.core import audit
from vms.core.models import AuditEntry, Role

T0 = dt.datetime(2025, 6, 1, 0, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
US = dt.timedelta(microseconds=1)


def _ids(session: Session, camera_id: int | None = None) -> list[int]:
    stmt = select(Segment.id).order_by(Segment.id)
    if camera_id is not None:
        stmt = stmt.where(Segment.camera_id == camera_id)
    return list(session.scalars(stmt))


def _receipts(session: Session, camera_id: int | None = None) -> list[Receipt]:
    rows, _ = service.list_receipts(
        session=session, principal=None, camera_id=camera_id, limit=100_000
    )
    return rows


def _sweep(session: Session, data_dir: Path, now: dt.datetime, **kw: object) -> service.SweepReport:
    return service.sweep(session=session, data_dir=data_dir, now=now, **kw)  # type: ignore[arg-type]


def test_footage_expires_exactly_at_the_boundary(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=24)
    seg = factory.segment(camera, start=T0, end=T0 + 10 * M, data_dir=data_dir)
    path = data_dir / seg.path
    sha = seg.sha256
    boundary = seg.end + 24 * H
    # Its end is exactly 24 h old: not older than retention yet.
    report = _sweep(session, data_dir, boundary)
    assert report.deleted == 0
    assert path.exists()
    assert _ids(session) == [seg.id]
    report = _sweep(session, data_dir, boundary + US)
    assert report.deleted == 1
    assert not path.exists()
    assert _ids(session) == []
    [receipt] = _receipts(session, camera.id)
    assert (receipt.segment_id, receipt.camera_id) == (seg.id, camera.id)
    assert (receipt.start, receipt.end) == (T0, T0 + 10 * M)
    assert receipt.sha256 == sha
    assert receipt.rule == f"retention 24h (legal basis {camera.legal_basis_id})"
    assert receipt.at == boundary + US
    assert audit.verify_chain(session).ok


def test_basis_caps_the_camera_wish(session: Session, factory: Factory, data_dir: Path) -> None:
    org = factory.org()
    basis = factory.basis(org, max_retention_hours=48)
    camera = factory.camera(org, basis=basis, retention_hours=720)
    seg = factory.segment(camera, start=T0, data_dir=data_dir)
    now = seg.end + 48 * H + US
    assert _sweep(session, data_dir, now).deleted == 1
    assert _receipts(session, camera.id)[0].rule == f"retention 48h (legal basis {basis.id})"


def test_camera_without_basis_uses_its_own_setting(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(basis=None, retention_hours=12)
    seg = factory.segment(camera, start=T0, data_dir=data_dir)
    assert _sweep(session, data_dir, seg.end + 12 * H).deleted == 0
    assert _sweep(session, data_dir, seg.end + 12 * H + US).deleted == 1
    assert _receipts(session, camera.id)[0].rule == "retention 12h (camera setting)"


@pytest.mark.parametrize(
    "camera_kw",
    [
        {"mode": CameraMode.live},  # nothing may be stored at all
        {"status": CameraStatus.decommissioned},  # its footage still expires
        {"status": CameraStatus.paused},
    ],
)
def test_special_cameras(
    session: Session, factory: Factory, data_dir: Path, camera_kw: dict[str, object]
) -> None:
    camera = factory.camera(retention_hours=24, **camera_kw)  # type: ignore[arg-type]
    seg = factory.segment(camera, start=T0, data_dir=data_dir)
    hours = 0 if camera_kw.get("mode") == CameraMode.live else 24
    assert _sweep(session, data_dir, seg.end + hours * H + US).deleted == 1


def test_holds_win_whatever_the_age(session: Session, factory: Factory, data_dir: Path) -> None:
    camera = factory.camera(retention_hours=24)
    held = factory.segment(camera, start=T0, data_dir=data_dir)
    free = factory.segment(camera, start=T0 + H, data_dir=data_dir)
    factory.hold([camera], start=T0 + 5 * M, end=T0 + 6 * M, now=T0 + 2 * H)
    report = _sweep(session, data_dir, T0 + 365 * 24 * H)
    assert report.deleted == 1
    assert report.held_past_retention == 1
    assert _ids(session) == [held.id]
    assert (data_dir / held.path).exists()
    assert not (data_dir / free.path).exists()
    # A hold on another camera protects nothing here.
    other = factory.camera(retention_hours=24)
    factory.segment(other, start=T0, data_dir=data_dir)
    _sweep(session, data_dir, T0 + 400 * 24 * H)
    assert _ids(session) == [held.id]


def test_expired_hold_releases(session: Session, factory: Factory, data_dir: Path) -> None:
    camera = factory.camera(retention_hours=24)
    seg = factory.segment(camera, start=T0, data_dir=data_dir)
    expires = T0 + 30 * 24 * H
    hold = factory.hold([camera], start=T0, end=T0 + H, expires_at=expires, now=T0 + H)
    report = _sweep(session, data_dir, expires - US)
    assert report.deleted == 0
    assert report.expired_holds == []
    report = _sweep(session, data_dir, expires)
    assert report.expired_holds == [hold.id]
    assert report.deleted == 1
    assert _ids(session) == []
    assert hold.released_at == expires
    assert hold.release_reason == "expired"
    assert session.scalar(
        select(func.count(AuditEntry.id)).where(AuditEntry.action == "retention.hold_expired")
    )
    assert _receipts(session, camera.id)[0].segment_id == seg.id


def test_released_hold_takes_effect_at_next_sweep(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=24)
    factory.segment(camera, start=T0, data_dir=data_dir)
    admin = factory.user(Role.admin, password=None)
    hold = factory.hold([camera], by=admin, start=T0, end=T0 + H, now=T0 + H)
    now = T0 + 10 * 24 * H
    assert _sweep(session, data_dir, now).deleted == 0
    service.release_hold(
        session=session, actor=admin.principal, hold_id=hold.id, reason="Ärendet avslutat", now=now
    )
    assert _sweep(session, data_dir, now + M).deleted == 1


def test_retention_shortened_at_run_time(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    org = factory.org()
    basis = factory.basis(org, max_retention_hours=72)
    camera = factory.camera(org, basis=basis, retention_hours=72)
    seg = factory.segment(camera, start=T0, data_dir=data_dir)
    now = seg.end + 30 * H
    assert _sweep(session, data_dir, now).deleted == 0
    camera.retention_hours = 24  # the camera's wish shrinks
    session.flush()
    assert _sweep(session, data_dir, now + M).deleted == 1
    seg2 = factory.segment(camera, start=now, data_dir=data_dir)
    camera.retention_hours = 72
    basis.max_retention_hours = 12  # then the legal basis shrinks below the wish
    session.flush()
    later = seg2.end + 13 * H
    report = _sweep(session, data_dir, later)
    assert report.deleted == 1
    assert report.cameras[camera.id].retention_hours == 12
    assert _receipts(session, camera.id)[-1].rule == f"retention 12h (legal basis {basis.id})"


def test_dry_run_changes_nothing(session: Session, factory: Factory, data_dir: Path) -> None:
    camera = factory.camera(retention_hours=1)
    segs = [factory.segment(camera, start=T0 + i * 10 * M, data_dir=data_dir) for i in range(5)]
    entries = session.scalar(select(func.count(AuditEntry.id)))
    report = _sweep(session, data_dir, T0 + 10 * H, dry_run=True, batch_size=2)
    assert [p.segment_id for p in report.planned] == [s.id for s in segs]
    assert report.deleted == 0
    assert _ids(session) == [s.id for s in segs]
    assert all((data_dir / s.path).exists() for s in segs)
    assert session.scalar(select(func.count(AuditEntry.id))) == entries
    assert session.scalar(select(func.count(RetentionSweep.id))) == 0


def test_batches_leave_one_receipt_per_file(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    cams = [factory.camera(retention_hours=1) for _ in range(3)]
    segs = [
        factory.segment(cam, start=T0 + i * 10 * M, data_dir=data_dir)
        for cam in cams
        for i in range(7)
    ]
    keep = factory.segment(cams[0], start=T0 + 100 * H, data_dir=data_dir)
    report = _sweep(session, data_dir, T0 + 50 * H, batch_size=3)
    assert report.deleted == len(segs)
    assert _ids(session) == [keep.id]
    receipts = _receipts(session)
    assert sorted(r.segment_id for r in receipts) == sorted(s.id for s in segs)  # type: ignore[type-var]
    assert {r.sha256 for r in receipts} == {s.sha256 for s in segs}
    # Empty hour folders go too; the camera folder stays (the recorder writes there again).
    left = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file()}
    assert left == {keep.path, LOCK_NAME}
    assert list((data_dir / RECORDINGS / str(cams[1].id)).iterdir()) == []
    assert audit.verify_chain(session).ok


def test_missing_files_are_tolerated(session: Session, factory: Factory, data_dir: Path) -> None:
    camera = factory.camera(retention_hours=1)
    seg = factory.segment(camera, start=T0)  # no file written
    assert _sweep(session, data_dir, T0 + 5 * H).deleted == 1
    assert _receipts(session, camera.id)[0].segment_id == seg.id


def test_interrupted_deletions_finish_without_second_receipt(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=1)
    segs = [factory.segment(camera, start=T0 + i * 10 * M, data_dir=data_dir) for i in range(4)]

    class Boom(Exception):
        pass

    def crash(_ids: object) -> None:
        raise Boom

    with pytest.raises(Boom):
        _sweep(session, data_dir, T0 + 5 * H, hooks=SweepHooks(after_receipts_commit=crash))
    states = set(session.scalars(select(Segment.state)))
    assert states == {SegmentState.deleting}
    assert len(_receipts(session)) == 4
    assert all((data_dir / s.path).exists() for s in segs)
    report = _sweep(session, data_dir, T0 + 6 * H)
    assert report.recovered == 4
    assert report.deleted == 0
    assert _ids(session) == []
    assert not any((data_dir / s.path).exists() for s in segs)
    assert len(_receipts(session)) == 4


def test_crash_before_commit_leaves_no_receipt(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=1)
    factory.segment(camera, start=T0, data_dir=data_dir)
    session.commit()

    def crash(_ids: object) -> None:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _sweep(session, data_dir, T0 + 5 * H, hooks=SweepHooks(before_receipts_commit=crash))
    session.rollback()
    assert _receipts(session) == []
    assert set(session.scalars(select(Segment.state))) == {SegmentState.ok}
    assert _sweep(session, data_dir, T0 + 5 * H).deleted == 1
    assert len(_receipts(session)) == 1


def test_undeletable_file_keeps_its_row_until_it_goes(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=1)
    seg = factory.segment(camera, start=T0)
    stuck = data_dir / seg.path
    stuck.mkdir(parents=True)  # a directory where the file should be: unlink fails
    report = _sweep(session, data_dir, T0 + 5 * H)
    assert report.deleted == 0
    assert report.unlink_errors == 1
    assert session.scalar(select(Segment.state).where(Segment.id == seg.id)) == (
        SegmentState.deleting
    )
    stuck.rmdir()
    report = _sweep(session, data_dir, T0 + 6 * H)
    assert report.recovered == 1
    assert _ids(session) == []
    assert len(_receipts(session)) == 1


def test_one_sweep_at_a_time(session: Session, factory: Factory, data_dir: Path) -> None:
    camera = factory.camera(retention_hours=1)
    factory.segment(camera, start=T0, data_dir=data_dir)
    with exclusive(data_dir) as locked:
        assert locked
        report = _sweep(session, data_dir, T0 + 5 * H)
    assert report.skipped
    assert report.deleted == 0
    assert _sweep(session, data_dir, T0 + 5 * H).deleted == 1


def test_the_sweep_is_recorded_and_published(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=1)
    for i in range(3):
        factory.segment(camera, start=T0 + i * 10 * M, data_dir=data_dir, size_bytes=1000)
    before = REGISTRY.get_sample_value(
        "vms_retention_deleted_segments_total", {"rule": "retention"}
    )
    now = T0 + 5 * H
    _sweep(session, data_dir, now)
    after = REGISTRY.get_sample_value("vms_retention_deleted_segments_total", {"rule": "retention"})
    assert (after or 0) - (before or 0) == 3
    assert REGISTRY.get_sample_value("vms_retention_last_sweep_timestamp_seconds") == (
        now.timestamp()
    )
    run = session.scalars(select(RetentionSweep).order_by(RetentionSweep.id.desc())).first()
    assert run is not None
    assert run.finished_at == now
    assert run.deleted == 3
    assert run.deleted_bytes == 3000


def _count_statements(engine: Engine, fn: Callable[[], object]) -> int:
    seen: list[str] = []

    def _before(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", _before)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", _before)
    return len(seen)


def test_sweep_work_does_not_grow_with_kept_footage(
    session: Session, factory: Factory, data_dir: Path, engine: Engine
) -> None:
    """Same due set, 20x more footage kept: the same statements (the bench measures time)."""
    counts = []
    for kept in (10, 200):
        camera = factory.camera(retention_hours=24)
        for i in range(5):
            factory.segment(camera, start=T0 + i * 10 * M)
        session.execute(
            insert(Segment),
            [
                {
                    "camera_id": camera.id,
                    "start": T0 + 48 * H + i * M,
                    "end": T0 + 48 * H + (i + 1) * M,
                    "path": f"kept/{camera.id}/{i}.mp4",
                    "size_bytes": 1,
                    "sha256": "0" * 64,
                    "codec": "h264",
                    "width": 1,
                    "height": 1,
                    "frames": 1,
                    "state": SegmentState.ok.value,
                    "created_at": T0,
                }
                for i in range(kept)
            ],
        )
        session.flush()
        counts.append(_count_statements(engine, lambda: _sweep(session, data_dir, T0 + 40 * H)))
        assert (
            session.scalar(select(func.count(Segment.id)).where(Segment.camera_id == camera.id))
            == kept
        )
        session.execute(delete(Segment).where(Segment.camera_id == camera.id))
    assert counts[0] == counts[1]


def test_disk_pressure_takes_the_camera_closest_to_its_limit(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    now = T0 + 1000 * H
    near = factory.camera(basis=None, retention_hours=100)  # oldest 90 h old: 90% of its limit
    far = factory.camera(basis=None, retention_hours=100)  # oldest 20 h old: 20%
    held_cam = factory.camera(basis=None, retention_hours=10)  # 9 h old (90%) but all held
    near_segs = [
        factory.segment(
            near, start=now - 90 * H + i * 10 * M, data_dir=data_dir, content=b"n" * 1000
        )
        for i in range(6)
    ]
    far_segs = [
        factory.segment(
            far, start=now - 20 * H + i * 10 * M, data_dir=data_dir, content=b"f" * 1000
        )
        for i in range(6)
    ]
    held = [
        factory.segment(
            held_cam, start=now - 9 * H + i * 10 * M, data_dir=data_dir, content=b"h" * 1000
        )
        for i in range(3)
    ]
    factory.hold([held_cam], start=now - 10 * H, end=now, now=now)
    capacity = 20_000

    def free(path: Path) -> int:
        used = sum(p.stat().st_size for p in (path / RECORDINGS).rglob("*") if p.is_file())
        return capacity - used

    # 15 files of 1000 bytes: 5000 free; the floor wants 7500, so three files must go.
    report = _sweep(
        session, data_dir, now, disk_free_floor_bytes=7500, free_bytes=free, batch_size=2
    )
    assert report.deleted == 3
    assert report.pressure_deleted == 3
    gone = {s.id for s in near_segs[:3]}
    assert set(_ids(session)) == {s.id for s in near_segs[3:] + far_segs + held}
    assert all(not (data_dir / s.path).exists() for s in near_segs[:3])
    receipts = _receipts(session)
    assert {r.segment_id for r in receipts} == gone
    assert {r.rule for r in receipts} == {"disk_pressure"}
    assert "below the 7500 byte floor" in receipts[0].reason
    assert set(report.shortened) == {near.id}
    assert report.shortened[near.id] == near_segs[2].end + 100 * H
    assert (
        REGISTRY.get_sample_value(
            "vms_retention_shortened_by_disk_pressure", {"camera_id": str(near.id)}
        )
        == 1
    )
    assert (
        REGISTRY.get_sample_value(
            "vms_retention_shortened_by_disk_pressure", {"camera_id": str(far.id)}
        )
        == 0
    )
    alert = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "retention.disk_pressure")
    ).one()
    assert alert.details["camera_id"] == near.id
    assert alert.details["deleted"] == 3
    # The next sweep, with room again, still says that camera keeps less than allowed.
    nxt = _sweep(session, data_dir, now + H, disk_free_floor_bytes=1000, free_bytes=free)
    assert nxt.pressure_deleted == 0
    assert set(nxt.shortened) == {near.id}


def test_disk_pressure_never_touches_held_footage(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    now = T0 + 100 * H
    camera = factory.camera(retention_hours=24)
    segs = [
        factory.segment(camera, start=now - 3 * H + i * 10 * M, data_dir=data_dir) for i in range(3)
    ]
    factory.hold([camera], start=now - 4 * H, end=now, now=now)
    report = _sweep(session, data_dir, now, disk_free_floor_bytes=10**18, free_bytes=lambda p: 0)
    assert report.pressure_deleted == 0
    assert _ids(session) == [s.id for s in segs]


def test_dry_run_under_pressure_plans_only(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    now = T0 + 100 * H
    camera = factory.camera(retention_hours=24)
    segs = [
        factory.segment(camera, start=now - 3 * H + i * 10 * M, data_dir=data_dir) for i in range(3)
    ]
    report = _sweep(
        session, data_dir, now, dry_run=True, disk_free_floor_bytes=1, free_bytes=lambda p: 0
    )
    assert [p.segment_id for p in report.planned] == [segs[0].id]
    assert _ids(session) == [s.id for s in segs]
    assert os.path.exists(data_dir / segs[0].path)
