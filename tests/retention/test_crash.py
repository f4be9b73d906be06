"""Crash tests: a sweep process is SIGKILLed half-way; the next run completes the job, files and
index agree, and every deleted file has exactly one receipt."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from retention import service
from retention.models import Segment, SegmentState
from tests.conftest import TEST_KEY
from tests.factories import Factory
from vms.core import audit
from vms.core.db import make_engine, utcnow

REPO = Path(__file__).resolve().parents[2]
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


@dataclass
class World:
    engine: Engine
    data_dir: Path
    now: dt.datetime
    due: dict[int, tuple[str, str]]  # segment id -> (path, sha256)
    kept: dict[int, str]


def _build(db_url: str, data_dir: Path, now: dt.datetime, due_per_camera: list[int]) -> World:
    engine = make_engine(db_url)
    due: dict[int, tuple[str, str]] = {}
    kept: dict[int, str] = {}
    with Session(engine) as session:
        factory = Factory(session)
        for n in due_per_camera:
            camera = factory.camera(basis=None, retention_hours=1)
            for i in range(n):
                seg = factory.segment(camera, start=now - 48 * H + i * M, data_dir=data_dir)
                due[seg.id] = (seg.path, seg.sha256)
            for i in range(3):
                seg = factory.segment(camera, start=now - 30 * M + i * M, data_dir=data_dir)
                kept[seg.id] = seg.path
        session.commit()
    return World(engine, data_dir, now, due, kept)


@pytest.fixture
def world(isolated_db_url: str, tmp_path: Path) -> Iterator[World]:
    data_dir = tmp_path / "data"
    w = _build(isolated_db_url, data_dir, utcnow(), [23, 12])
    yield w
    w.engine.dispose()


def _receipt_ids(session: Session) -> list[int | None]:
    rows, _ = service.list_receipts(session=session, principal=None, limit=100_000)
    return [r.segment_id for r in rows]


def _assert_consistent_midway(w: World) -> None:
    """Whatever the kill point: a receipt exists for every file already gone, and a row that is
    gone has no file left."""
    with Session(w.engine) as session:
        receipted = set(_receipt_ids(session))
        rows = {r[0]: r[1] for r in session.execute(select(Segment.id, Segment.state))}
    for seg_id, (path, _) in w.due.items():
        exists = (w.data_dir / path).exists()
        if seg_id not in rows:
            assert not exists, f"segment {seg_id}: row gone but file left"
            assert seg_id in receipted, f"segment {seg_id}: deleted without a receipt"
        elif not exists:
            assert seg_id in receipted
            assert rows[seg_id] is SegmentState.deleting
        if seg_id in receipted:
            assert seg_id not in rows or rows[seg_id] is SegmentState.deleting


def _assert_complete(w: World) -> None:
    with Session(w.engine) as session:
        remaining = set(session.scalars(select(Segment.id)))
        assert remaining == set(w.kept)
        ids = _receipt_ids(session)
        assert sorted(i for i in ids if i is not None) == sorted(w.due), "missing/duplicate receipt"
        rows, _ = service.list_receipts(session=session, principal=None, limit=100_000)
        assert {r.segment_id: r.sha256 for r in rows} == {k: v[1] for k, v in w.due.items()}
        report = service.check(session=session, data_dir=w.data_dir, repair=False, now=w.now)
        assert report.ok, report
        assert audit.verify_chain(session).ok
    for path, _ in w.due.values():
        assert not (w.data_dir / path).exists()
    for path in w.kept.values():
        assert (w.data_dir / path).exists()


def _sweep_in_process(w: World) -> service.SweepReport:
    with Session(w.engine) as session:
        report = service.sweep(session=session, data_dir=w.data_dir, now=w.now, batch_size=5)
        session.commit()
    return report


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buf = ""
    while time.monotonic() < deadline:
        chunk = proc.stdout.readline()
        if chunk:
            buf += chunk
            if buf.endswith("\n"):
                return buf.strip()
        elif proc.poll() is not None:
            return buf.strip()
        else:
            time.sleep(0.01)
    raise AssertionError("the sweep process did not reach the kill point in time")


@pytest.mark.parametrize(
    ("hook", "n"),
    [
        ("before_receipts_commit", 2),  # inside batch 2's transaction: receipts not committed
        ("after_receipts_commit", 3),  # batch 3 receipted and marked, nothing unlinked
        ("after_unlink", 7),  # half-way through batch 2's unlinks
        ("after_batch", 4),  # between batches
    ],
)
def test_sigkill_mid_sweep_then_next_run_completes(
    world: World, isolated_db_url: str, hook: str, n: int
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.retention.crash_driver",
            isolated_db_url,
            str(world.data_dir),
            world.now.isoformat(),
            "5",
            hook,
            str(n),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(proc, timeout=60)
        assert line == "READY", proc.stderr.read() if proc.stderr else line
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    _assert_consistent_midway(world)
    with Session(world.engine) as session:
        receipted_before = len(_receipt_ids(session))
    assert receipted_before < len(world.due)  # really killed half-way
    report = _sweep_in_process(world)
    assert report.recovered + report.deleted >= len(world.due) - receipted_before
    _assert_complete(world)
    # A further run has nothing left to do and writes nothing.
    again = _sweep_in_process(world)
    assert (again.deleted, again.recovered) == (0, 0)
    _assert_complete(world)


@pytest.mark.slow
def test_cli_sweep_killed_at_random_moments(isolated_db_url: str, tmp_path: Path) -> None:
    """The real `vms retention sweep`, SIGKILLed at random points of its work until it is done.

    Each run is killed a random few milliseconds after it has committed a random number of
    receipts, so the kills land in every phase (receipts, unlinks, row deletes, between
    batches)."""
    data_dir = tmp_path / "data"
    w = _build(isolated_db_url, data_dir, utcnow(), [600, 600])
    env = {
        **os.environ,
        "VMS_DATABASE_URL": isolated_db_url,
        "VMS_DATA_DIR": str(data_dir),
        "VMS_SECRET_KEY": TEST_KEY,
        "VMS_PROFILE": "test",
        "VMS_RETENTION__BATCH_SIZE": "10",
        "VMS_RETENTION__DISK_FREE_FLOOR_BYTES": "0",
    }
    rng = random.Random(1234)
    kills = 0
    try:
        for _attempt in range(8):
            with Session(w.engine) as session:
                done_before = len(_receipt_ids(session))
            target = done_before + rng.randint(1, 150)
            proc = subprocess.Popen(
                [sys.executable, "-m", "vms.cli", "retention", "sweep"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                with Session(w.engine) as session:
                    receipted = len(_receipt_ids(session))
                if receipted >= target:
                    time.sleep(rng.uniform(0, 0.02))
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.003)
            proc.wait(timeout=30)
            _assert_consistent_midway(w)
            if proc.returncode == 0:
                break
        assert kills >= 3, f"only {kills} kills: the sweep finished too early, make the set bigger"
        done = subprocess.run(
            [sys.executable, "-m", "vms.cli", "retention", "sweep"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        w.now = utcnow()
        _assert_complete(w)
    finally:
        w.engine.dispose()
