"""Retention sweep cost: a city-sized footage index with a fixed due set, at two index sizes.

    .venv/bin/python bench/retention.py                     # SQLite, 100k and 1M segments
    scripts/with-postgres .venv/bin/python bench/retention.py --backends sqlite,postgres

For each backend and each index size the bench builds a fresh database (SQLAlchemy Core bulk
inserts): 1,000 cameras with an in-force legal basis, N segments of 10 minutes spread over each
camera's retention window, and the 10 oldest segments of every camera (10,000 in all) past
retention, each with a small placeholder file. It then runs the real sweep (`retention.sweep`:
receipts in the hash-chained audit log, files unlinked, rows deleted, batches committed) and
times it; then re-inserts a fresh due set and sweeps again (rounds); then times a sweep with
nothing due (the steady state every few minutes). Writes bench/results/retention.md.

PostgreSQL: the server is the one VMS_TEST_DATABASE_URL (or --pg-url) points at; each run uses a
database of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy  # noqa: E402
from sqlalchemy import Engine, create_engine, event, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from permits.models import BasisKind, BasisStatus, LegalBasis  # noqa: E402
from registry.models import Camera, CameraMode, CameraStatus, SourceKind  # noqa: E402
from retention.models import Segment, SegmentState  # noqa: E402
from retention.paths import relative_segment_path  # noqa: E402
from retention.sweep import sweep  # noqa: E402
from vms.all_models import Base  # noqa: E402
from vms.core.db import make_engine, make_sessionmaker, utcnow  # noqa: E402
from vms.core.models import AuditEntry, Organisation  # noqa: E402

SEGMENT = dt.timedelta(minutes=10)
RETENTION_HOURS = 168  # a week: 1,000 segments of 10 minutes per camera at the 1M size
PLACEHOLDER = b"\x00" * 64


@dataclass
class Run:
    backend: str
    total: int
    cameras: int
    due: int
    batch: int
    setup_s: float = 0.0
    rounds_s: list[float] = field(default_factory=list)
    rounds_cpu_s: list[float] = field(default_factory=list)
    db_only_s: list[float] = field(default_factory=list)
    db_only_cpu_s: list[float] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)
    statements: list[int] = field(default_factory=list)
    idle_s: list[float] = field(default_factory=list)
    idle_statements: int = 0
    dry_run_s: float = 0.0
    db_version: str = ""


class StatementCounter:
    """Counts the statements sent to the database while active."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.count = 0

    def _before(self, *_args: Any) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)


def _setup(engine: Engine, run: Run, now: dt.datetime, data_dir: Path) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    per_camera = run.total // run.cameras
    due_per_camera = run.due // run.cameras
    with Session(engine) as session:
        org = Organisation(name="Bench kommun")
        session.add(org)
        session.flush()
        basis = LegalBasis(
            organisation_id=org.id,
            kind=BasisKind.assessment,
            status=BasisStatus.in_force,
            title="Intresseavvägning",
            max_retention_hours=RETENTION_HOURS,
            live_view_allowed=True,
            recording_allowed=True,
        )
        session.add(basis)
        session.flush()
        org_id, basis_id = org.id, basis.id
        session.commit()
    with engine.begin() as conn:
        conn.execute(
            insert(Camera),
            [
                {
                    "organisation_id": org_id,
                    "name": f"Kamera {i}",
                    "purpose": "Bench",
                    "purpose_category": "public_safety",
                    "mode": CameraMode.live_and_recording,
                    "retention_hours": RETENTION_HOURS,
                    "legal_basis_id": basis_id,
                    "source_kind": SourceKind.rtsp,
                    "timezone": "Europe/Stockholm",
                    "schedule": [],
                    "status": CameraStatus.active,
                    "signage_posted": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(run.cameras)
            ],
        )
        camera_ids = list(conn.scalars(select(Camera.id).order_by(Camera.id)))
    cutoff = now - dt.timedelta(hours=RETENTION_HOURS)
    kept = per_camera - due_per_camera
    # Kept segments spread evenly over the retention window (ending by `now`).
    spacing = (dt.timedelta(hours=RETENTION_HOURS) - SEGMENT) / max(kept, 1)
    rows: list[dict[str, Any]] = []
    chunk = 20_000

    def flush_rows() -> None:
        if rows:
            with engine.begin() as conn:
                conn.execute(insert(Segment), rows)
            rows.clear()

    for cid in camera_ids:
        for i in range(kept):
            start = cutoff + SEGMENT + i * spacing
            rows.append(_row(cid, start, now))
            if len(rows) >= chunk:
                flush_rows()
    flush_rows()
    _insert_due(engine, camera_ids, due_per_camera, cutoff, now, data_dir)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def _row(camera_id: int, start: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    return {
        "camera_id": camera_id,
        "start": start,
        "end": start + SEGMENT,
        "path": relative_segment_path(camera_id, start),
        "size_bytes": len(PLACEHOLDER),
        "sha256": hashlib.sha256(PLACEHOLDER).hexdigest(),
        "mask_plan_hash": None,
        "codec": "h264",
        "width": 1920,
        "height": 1080,
        "frames": 15000,
        "state": SegmentState.ok,
        "created_at": now,
    }


def _insert_due(
    engine: Engine,
    camera_ids: list[int],
    per_camera: int,
    cutoff: dt.datetime,
    now: dt.datetime,
    data_dir: Path,
    round_no: int = 0,
    files: bool = True,
) -> None:
    rows = []
    for cid in camera_ids:
        for i in range(per_camera):
            # Distinct starts per round (paths are unique), all ending before the cut-off.
            start = cutoff - (i + 1) * SEGMENT - dt.timedelta(days=1 + round_no)
            row = _row(cid, start, now)
            rows.append(row)
            if files:
                path = data_dir / row["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(PLACEHOLDER)
    with engine.begin() as conn:
        conn.execute(insert(Segment), rows)
        conn.execute(text("ANALYZE"))


def _sweep_once(
    engine: Engine, data_dir: Path, now: dt.datetime, batch: int, dry_run: bool = False
) -> tuple[float, int, int]:
    with StatementCounter(engine) as counter, make_sessionmaker(engine)() as session:
        t0, c0 = time.perf_counter(), time.process_time()
        report = sweep(
            session=session, data_dir=data_dir, now=now, batch_size=batch, dry_run=dry_run
        )
        session.commit()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    deleted = len(report.planned) if dry_run else report.deleted
    CPU_LOG.append(cpu)
    return elapsed, counter.count, deleted


# CPU seconds of this process per sweep, in call order (the machine is shared: wall time is noisy).
CPU_LOG: list[float] = []


def bench_one(url: str, backend: str, total: int, args: argparse.Namespace) -> Run:
    run = Run(backend, total, args.cameras, args.due, args.batch)
    engine = make_engine(url)
    data_dir = Path(tempfile.mkdtemp(prefix="vms-bench-retention-"))
    try:
        with engine.connect() as conn:
            if backend == "sqlite":
                version = conn.exec_driver_sql("select sqlite_version()").scalar()
                run.db_version = f"SQLite {version}"
            else:
                version = conn.exec_driver_sql("show server_version").scalar()
                run.db_version = f"PostgreSQL {str(version).split()[0]}"
        now = utcnow()
        t0 = time.perf_counter()
        _setup(engine, run, now, data_dir)
        run.setup_s = time.perf_counter() - t0
        load_before = os.getloadavg()[0]
        with Session(engine) as session:
            camera_ids = list(session.scalars(select(Camera.id).order_by(Camera.id)))
            assert session.scalar(select(func.count(Segment.id))) == total
        t0 = time.perf_counter()
        _, _, planned = _sweep_once(engine, data_dir, now, args.batch, dry_run=True)
        run.dry_run_s = time.perf_counter() - t0
        assert planned == args.due, planned
        cutoff = now - dt.timedelta(hours=RETENTION_HOURS)
        # Rounds with files (unlink + empty-folder pruning included), then rounds whose due
        # rows have no files (the sweep tolerates that): the database work alone.
        for round_no in range(2 * args.rounds):
            with_files = round_no < args.rounds
            if round_no:
                _insert_due(
                    engine,
                    camera_ids,
                    args.due // args.cameras,
                    cutoff,
                    now,
                    data_dir,
                    round_no,
                    files=with_files,
                )
            elapsed, statements, deleted = _sweep_once(engine, data_dir, now, args.batch)
            assert deleted == args.due, deleted
            (run.rounds_s if with_files else run.db_only_s).append(elapsed)
            (run.rounds_cpu_s if with_files else run.db_only_cpu_s).append(CPU_LOG[-1])
            run.statements.append(statements)
            print(
                f"{backend} {total:>9,} segments: swept {deleted} due in {elapsed:.2f}s "
                f"(cpu {CPU_LOG[-1]:.2f}s, {statements} statements"
                f"{'' if with_files else ', no files'})",
                flush=True,
            )
        with Session(engine) as session:
            left = session.scalar(select(func.count(Segment.id)))
            receipts = session.scalar(
                select(func.count(AuditEntry.id)).where(AuditEntry.action == "retention.deleted")
            )
        assert left == total - args.due, left
        assert receipts == args.due * args.rounds * 2, receipts
        assert not any(data_dir.rglob("*.mp4")), "due files left behind"
        for _ in range(3):
            elapsed, statements, deleted = _sweep_once(engine, data_dir, now, args.batch)
            assert deleted == 0
            run.idle_s.append(elapsed)
            run.idle_statements = statements
        run.load = (load_before, os.getloadavg()[0])
        return run
    finally:
        engine.dispose()
        shutil.rmtree(data_dir, ignore_errors=True)


def _pg_database(server_url: str) -> tuple[str, Any]:
    name = f"vms_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server_url).set(database=name).render_as_string(hide_password=False), drop


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, Linux {platform.release()}"


def write_markdown(runs: list[Run], args: argparse.Namespace, out: Path) -> None:
    lines = [
        "# Retention sweep benchmark",
        "",
        f"Generated {utcnow():%Y-%m-%d %H:%M} UTC by `{' '.join(['python', *sys.argv])}`.",
        "",
        f"- machine: {_machine()}",
        f"- python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        + ", ".join(sorted({r.db_version for r in runs})),
        f"- {args.cameras} cameras, {args.due} due segments (the {args.due // args.cameras} oldest "
        f"of each camera), batch size {args.batch}, retention {RETENTION_HOURS} h, 10-minute "
        "segments; due files are 64-byte placeholders on local disk",
        "- a sweep = expire holds, per camera: policy once + due query on (camera_id, end), and "
        "per batch: receipts (hash-chained audit entries) + mark `deleting` (commit), unlink, "
        "delete rows (commit)",
        f"- {args.rounds} rounds per size (a fresh due set is inserted before each), median shown;"
        " idle = a sweep with nothing due (what the server runs every few minutes)",
        "",
        "| backend | segments in index | due swept | sweep wall (median) | rounds, wall "
        "| sweep CPU (median) | per due segment (wall) | DB work only (no files): wall, CPU "
        "| statements | idle sweep | dry run | setup | load avg |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        med = statistics.median(r.rounds_s)
        lines.append(
            f"| {r.backend} | {r.total:,} | {r.due:,} | {med:.2f} s | "
            f"{', '.join(f'{x:.2f}' for x in r.rounds_s)} | "
            f"{statistics.median(r.rounds_cpu_s):.2f} s | {med / r.due * 1000:.3f} ms | "
            f"{statistics.median(r.db_only_s):.2f} s, {statistics.median(r.db_only_cpu_s):.2f} s | "
            f"{statistics.median(r.statements):.0f} | {statistics.median(r.idle_s):.2f} s "
            f"({r.idle_statements} st.) | {r.dry_run_s:.2f} s | {r.setup_s:.0f} s | "
            f"{r.load[0]:.1f} / {r.load[1]:.1f} |"
        )
    lines += ["", "Growth from the smaller to the larger index (same due set):", ""]
    for backend in sorted({r.backend for r in runs}):
        mine = sorted((r for r in runs if r.backend == backend), key=lambda r: r.total)
        if len(mine) >= 2:
            a, b = mine[0], mine[-1]
            ratio = statistics.median(b.rounds_s) / statistics.median(a.rounds_s)
            db_ratio = statistics.median(b.db_only_s) / statistics.median(a.db_only_s)
            cpu_ratio = statistics.median(b.rounds_cpu_s) / statistics.median(a.rounds_cpu_s)
            lines.append(
                f"- {backend}: {b.total // a.total}x the segments, sweep wall time x{ratio:.2f}, "
                f"CPU x{cpu_ratio:.2f}, database work alone (wall) x{db_ratio:.2f}, "
                f"statements {statistics.median(a.statements):.0f} -> "
                f"{statistics.median(b.statements):.0f}"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite", help="sqlite,postgres")
    parser.add_argument("--totals", default="100000,1000000")
    parser.add_argument("--cameras", type=int, default=1000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=os.environ.get("VMS_TEST_DATABASE_URL"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "retention.md")
    args = parser.parse_args()
    runs = []
    for backend in args.backends.split(","):
        for total in (int(t) for t in args.totals.split(",")):
            if backend == "sqlite":
                tmp = Path(tempfile.mkdtemp(prefix="vms-bench-db-"))
                try:
                    runs.append(bench_one(f"sqlite:///{tmp / 'bench.db'}", backend, total, args))
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            elif backend == "postgres":
                if not args.pg_url:
                    parser.error("postgres needs --pg-url or VMS_TEST_DATABASE_URL")
                url, drop = _pg_database(args.pg_url)
                try:
                    runs.append(bench_one(url, backend, total, args))
                finally:
                    drop()
            else:
                parser.error(f"unknown backend {backend!r}")
    write_markdown(runs, args, args.out)


if __name__ == "__main__":
    main()
