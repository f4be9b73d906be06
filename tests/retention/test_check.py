"""Reconciliation: files without rows, rows without files, and what --repair does about them."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from retention import receipts, service
from retention.models import Segment, SegmentState
from retention.paths import relative_segment_path
from tests.factories import Factory
from tests.media import write_mp4
from vms.core import audit
from vms.core.db import utcnow
from vms.core.models import AuditEntry
from vms.core.pagination import PageParams

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def _orphan(data_dir: Path, camera_id: int, start: dt.datetime, data: bytes = b"x" * 10) -> str:
    rel = relative_segment_path(camera_id, start)
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    age = (start + 10 * M).timestamp()
    os.utime(path, (age, age))
    return rel


def _receipts(session: Session) -> list[receipts.Receipt]:
    rows, _ = service.list_receipts(session=session, principal=None, limit=10_000)
    return rows


def test_clean_tree_is_ok(session: Session, factory: Factory, data_dir: Path) -> None:
    camera = factory.camera()
    factory.segment(camera, start=utcnow() - 3 * H, data_dir=data_dir)
    factory.segment(camera, start=utcnow() - 2 * H, data_dir=data_dir)
    report = service.check(session=session, data_dir=data_dir, repair=False)
    assert report.ok
    assert report.unresolved == 0
    assert (report.files, report.rows) == (2, 2)


def test_orphan_past_retention_is_deleted_with_a_receipt(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=24)
    now = utcnow()
    rel = _orphan(data_dir, camera.id, now - 48 * H, b"old footage")
    report = service.check(session=session, data_dir=data_dir, repair=False, now=now)
    assert not report.ok
    [orphan] = report.orphan_files
    assert (orphan.path, orphan.camera_id, orphan.action) == (
        rel,
        camera.id,
        "reported: past retention",
    )
    assert (data_dir / rel).exists()
    report = service.check(session=session, data_dir=data_dir, repair=True, now=now)
    assert report.orphan_files[0].action == "deleted"
    assert report.unresolved == 0
    assert not (data_dir / rel).exists()
    [receipt] = _receipts(session)
    assert receipt.segment_id is None
    assert receipt.path == rel
    assert receipt.rule == "orphan_past_retention"
    import hashlib

    assert receipt.sha256 == hashlib.sha256(b"old footage").hexdigest()
    assert service.check(session=session, data_dir=data_dir, repair=False, now=now).ok


def test_retried_orphan_deletion_writes_no_second_receipt(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=24)
    now = utcnow()
    rel = _orphan(data_dir, camera.id, now - 48 * H, b"abc")
    import hashlib

    # A previous repair wrote its receipt and died before the unlink.
    receipts.write(
        session,
        organisation_id=camera.organisation_id,
        camera_id=camera.id,
        segment_id=None,
        start=None,
        end=now,
        sha256=hashlib.sha256(b"abc").hexdigest(),
        size_bytes=3,
        path=rel,
        rule="orphan_past_retention",
        reason="",
        index_state=None,
        at=now,
    )
    service.check(session=session, data_dir=data_dir, repair=True, now=now)
    assert not (data_dir / rel).exists()
    assert len(_receipts(session)) == 1


def test_young_orphan_is_indexed_again(session: Session, factory: Factory, data_dir: Path) -> None:
    camera = factory.camera(retention_hours=24)
    now = utcnow()
    start = (now - 2 * H).replace(microsecond=0)
    rel = relative_segment_path(camera.id, start)
    write_mp4(data_dir / rel, frames=50)
    old = (now - H).timestamp()
    os.utime(data_dir / rel, (old, old))
    report = service.check(session=session, data_dir=data_dir, repair=False, now=now)
    assert report.orphan_files[0].action == "reported: within retention"
    report = service.check(session=session, data_dir=data_dir, repair=True, now=now)
    assert report.orphan_files[0].action == "indexed"
    assert report.unresolved == 0
    seg = session.scalars(select(Segment).where(Segment.path == rel)).one()
    assert (seg.start, seg.end, seg.frames, seg.width, seg.height) == (
        start,
        start + dt.timedelta(seconds=2),
        50,
        64,
        48,
    )
    assert seg.mask_plan_hash is None
    assert service.check(session=session, data_dir=data_dir, repair=False, now=now).ok


def test_unreadable_or_held_orphans_are_kept(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera(retention_hours=24)
    now = utcnow()
    broken = _orphan(data_dir, camera.id, now - 3 * H, b"not a video")
    held = _orphan(data_dir, camera.id, now - 100 * H)
    factory.hold([camera], start=now - 101 * H, end=now - 99 * H, now=now)
    report = service.check(session=session, data_dir=data_dir, repair=True, now=now)
    actions = {o.path: o.action for o in report.orphan_files}
    assert actions == {broken: "kept: unreadable", held: "kept: under legal hold"}
    assert report.unresolved == 2
    assert (data_dir / broken).exists()
    assert (data_dir / held).exists()


def test_rows_without_files_are_marked_missing_and_restored(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera()
    now = utcnow()
    seg = factory.segment(camera, start=now - 3 * H, data_dir=data_dir)
    seg.created_at = now - 2 * H
    session.flush()
    content = (data_dir / seg.path).read_bytes()
    (data_dir / seg.path).unlink()
    report = service.check(session=session, data_dir=data_dir, repair=False, now=now)
    assert [(d.segment_id, d.action) for d in report.dangling_rows] == [(seg.id, "reported")]
    report = service.check(session=session, data_dir=data_dir, repair=True, now=now)
    assert report.dangling_rows[0].action == "marked missing"
    assert report.unresolved == 0
    session.expire_all()
    assert session.get(Segment, seg.id).state is SegmentState.missing  # type: ignore[union-attr]
    assert (
        session.scalar(
            select(func.count(AuditEntry.id)).where(
                AuditEntry.action == "retention.segments_missing"
            )
        )
        == 1
    )
    again = service.check(session=session, data_dir=data_dir, repair=False, now=now)
    assert again.ok
    assert again.known_missing == 1
    # Not playable any more ...
    segs, _ = service.list_recordings(
        session=session,
        principal=factory.user("admin", password=None).principal,
        camera_id=camera.id,
        start=now - 4 * H,
        end=now,
        page=PageParams(limit=10, offset=0),
    )
    assert segs == []
    # ... until the file comes back (a remounted disk).
    (data_dir / seg.path).write_bytes(content)
    report = service.check(session=session, data_dir=data_dir, repair=True, now=now)
    assert [d.action for d in report.dangling_rows] == ["restored"]
    session.expire_all()
    assert session.get(Segment, seg.id).state is SegmentState.ok  # type: ignore[union-attr]


def test_fresh_rows_and_files_are_left_to_the_pipeline(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera()
    now = utcnow()
    factory.segment(camera, start=now - 10 * M)  # indexed a moment ago, file not renamed yet
    fresh = relative_segment_path(camera.id, now - 5 * M)
    (data_dir / fresh).parent.mkdir(parents=True, exist_ok=True)
    (data_dir / fresh).write_bytes(b"renamed, not yet indexed")
    partial = data_dir / (relative_segment_path(camera.id, now - M) + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)  # another hour near :00
    partial.write_bytes(b"being written")
    report = service.check(session=session, data_dir=data_dir, repair=True, now=now)
    assert report.ok, report
    assert partial.exists()
    assert (data_dir / fresh).exists()


def test_stale_partials_are_cleaned(session: Session, factory: Factory, data_dir: Path) -> None:
    camera = factory.camera()
    now = utcnow()
    rel = relative_segment_path(camera.id, now - 2 * H) + ".partial"
    path = data_dir / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a segment")
    old = (now - H).timestamp()
    os.utime(path, (old, old))
    report = service.check(session=session, data_dir=data_dir, repair=False, now=now)
    assert [p.action for p in report.stale_partials] == ["reported"]
    report = service.check(session=session, data_dir=data_dir, repair=True, now=now)
    assert [p.action for p in report.stale_partials] == ["deleted"]
    assert not path.exists()
    assert [r.rule for r in _receipts(session)] == ["stale_partial"]


def test_foreign_files_are_reported_never_deleted(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera()
    folder = data_dir / "recordings" / str(camera.id)
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("do not delete")
    (data_dir / "recordings" / "README").write_text("hello")
    old = (utcnow() - 100 * H).timestamp()
    os.utime(folder / "notes.txt", (old, old))
    report = service.check(session=session, data_dir=data_dir, repair=True)
    assert sorted(report.foreign_files) == sorted(
        [f"recordings/{camera.id}/notes.txt", "recordings/README"]
    )
    assert (folder / "notes.txt").exists()
    assert report.unresolved == 2


def test_rows_being_deleted_are_not_findings(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera()
    now = utcnow()
    seg = factory.segment(camera, start=now - 5 * H, data_dir=data_dir)
    seg.state = SegmentState.deleting
    seg.created_at = now - 4 * H
    session.flush()
    (data_dir / seg.path).unlink()
    assert service.check(session=session, data_dir=data_dir, repair=False, now=now).ok
    assert audit.verify_chain(session).ok


def test_file_resurrected_after_power_cut_goes_again_without_second_receipt(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    """Disk pressure deleted a young segment; a power cut lost the unlink (not the row deletion).
    The check must not re-index it: it deletes it again under the receipt already written."""
    camera = factory.camera(basis=None, retention_hours=100)
    now = utcnow()
    seg = factory.segment(camera, start=now - 3 * H, data_dir=data_dir)
    content = (data_dir / seg.path).read_bytes()
    swept = service.sweep(
        session=session,
        data_dir=data_dir,
        now=now,
        disk_free_floor_bytes=10,
        free_bytes=lambda p: 0 if (p / seg.path).exists() else 100,
    )
    assert swept.pressure_deleted == 1
    (data_dir / seg.path).parent.mkdir(parents=True, exist_ok=True)
    (data_dir / seg.path).write_bytes(content)  # the lost unlink
    old = (now - 2 * H).timestamp()
    os.utime(data_dir / seg.path, (old, old))
    report = service.check(session=session, data_dir=data_dir, repair=False, now=now)
    assert [o.action for o in report.orphan_files] == ["reported: deleted before"]
    report = service.check(session=session, data_dir=data_dir, repair=True, now=now)
    assert [o.action for o in report.orphan_files] == ["deleted"]
    assert not (data_dir / seg.path).exists()
    assert [r.segment_id for r in _receipts(session)] == [seg.id]
