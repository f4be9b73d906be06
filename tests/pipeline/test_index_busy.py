"""SQLite busy for longer than a worker waits: the footage stays on disk and is indexed when the
database answers again (with a real lock held by another connection, as a long request would)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from retention import service as retention_service
from retention.models import Segment
from tests.factories import Factory
from tests.pipeline.test_recorder import feed
from vms.all_models import Base
from vms.core.db import make_engine, make_sessionmaker
from vms.pipeline.index import DbSegmentIndex
from vms.pipeline.recorder import SegmentRecorder, pending_index_path
from vms.pipeline.recovery import recover

pytestmark = pytest.mark.nodb  # its own SQLite file: the lock is the point


def test_footage_survives_a_database_locked_past_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "vms.db"
    url = f"sqlite:///{db}"
    data_dir = tmp_path / "data"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        camera = Factory(session).camera()
        session.commit()
    worker_engine = make_engine(url, busy_timeout_s=0.2)
    index = DbSegmentIndex(make_sessionmaker(worker_engine), camera.organisation_id)
    rec = SegmentRecorder(
        camera_id=camera.id,
        data_dir=data_dir,
        segment_seconds=1.0,
        mask_plan_hash=None,
        index=index,
        fps_hint=25,
    )
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        feed(rec, 60)
        rec.drain()
        on_disk = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.mp4"))
        assert len(on_disk) == 2
        assert rec.index_pending == 2
    finally:
        blocker.execute("ROLLBACK")
    rec.retry_index()
    rec.drain()
    with Session(engine) as session:
        assert sorted(session.scalars(select(Segment.path))) == on_disk
    # Locked again as the worker stops: the next worker of the camera indexes what was left.
    blocker.execute("BEGIN IMMEDIATE")
    try:
        rec.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert pending_index_path(data_dir, camera.id).exists()
    result = recover(data_dir=data_dir, camera_id=camera.id, index=index)
    assert len(result.indexed) == 1
    with Session(engine) as session:
        paths = sorted(session.scalars(select(Segment.path)))
        report = retention_service.check(session=session, data_dir=data_dir, repair=False)
    assert paths == sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.mp4"))
    assert report.ok, report
    worker_engine.dispose()
    engine.dispose()
