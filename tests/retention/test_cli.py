"""`vms retention ...` against a database of its own."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from retention.models import Segment
from retention.paths import relative_segment_path
from tests.conftest import TEST_KEY
from tests.factories import Factory
from vms.cli import app
from vms.core.db import make_engine, utcnow

H = dt.timedelta(hours=1)


@dataclass
class Env:
    engine: Engine
    data_dir: Path
    camera_id: int
    due_ids: list[int]
    kept_ids: list[int]


@pytest.fixture
def env(isolated_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    data_dir = tmp_path / "data"
    for key, value in {
        "VMS_DATABASE_URL": isolated_db_url,
        "VMS_DATA_DIR": str(data_dir),
        "VMS_SECRET_KEY": TEST_KEY,
        "VMS_PROFILE": "test",
        "VMS_RETENTION__DISK_FREE_FLOOR_BYTES": "0",
    }.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(isolated_db_url)
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        factory = Factory(session)
        camera = factory.camera(retention_hours=24)
        due = [
            factory.segment(camera, start=now - (30 + i) * H, data_dir=data_dir) for i in range(3)
        ]
        kept = [factory.segment(camera, start=now - 2 * H, data_dir=data_dir)]
        session.commit()
    yield Env(engine, data_dir, camera.id, [s.id for s in due], [s.id for s in kept])
    engine.dispose()


runner = CliRunner()


def _ids(env: Env) -> list[int]:
    with Session(env.engine) as session:
        return list(session.scalars(select(Segment.id).order_by(Segment.id)))


def test_sweep_dry_run_then_real(env: Env) -> None:
    result = runner.invoke(app, ["retention", "sweep", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run: 3 segments would be deleted" in result.output
    assert _ids(env) == sorted(env.due_ids + env.kept_ids)
    result = runner.invoke(app, ["retention", "sweep"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted 3 segments")
    assert _ids(env) == env.kept_ids
    result = runner.invoke(app, ["retention", "sweep", "--json"])
    assert json.loads(result.output)["deleted"] == 0


def test_receipts(env: Env) -> None:
    runner.invoke(app, ["retention", "sweep"])
    result = runner.invoke(
        app, ["retention", "receipts", "--camera", str(env.camera_id), "--since", "1d"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "3 receipts"
    assert all("rule: retention 24h" in line for line in lines[:-1])
    result = runner.invoke(app, ["retention", "receipts", "--camera", "999", "--json"])
    assert result.exit_code == 0
    assert result.output == ""
    rows = runner.invoke(app, ["retention", "receipts", "--json"]).output.splitlines()
    assert sorted(json.loads(r)["segment_id"] for r in rows) == env.due_ids
    future = (utcnow() + H).isoformat()
    result = runner.invoke(app, ["retention", "receipts", "--since", future])
    assert result.output.strip() == "0 receipts"


@pytest.mark.parametrize("when", ["yesterday", "2025-01-01T00:00:00", "12x"])
def test_bad_times_are_one_line_errors(env: Env, when: str) -> None:
    result = runner.invoke(app, ["retention", "receipts", "--since", when])
    assert result.exit_code == 1
    assert result.output.startswith("error: --since")
    assert len(result.output.strip().splitlines()) == 1


def test_check_and_repair(env: Env) -> None:
    assert runner.invoke(app, ["retention", "check"]).exit_code == 0
    old = utcnow() - 100 * H
    rel = relative_segment_path(env.camera_id, old)
    orphan = env.data_dir / rel
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"lost row")
    os.utime(orphan, (old.timestamp(), old.timestamp()))
    result = runner.invoke(app, ["retention", "check"])
    assert result.exit_code == 1
    assert f"file without index row: {rel}" in result.output
    result = runner.invoke(app, ["retention", "check", "--repair", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["orphan_files"][0]["action"] == "deleted"
    assert not orphan.exists()
    assert runner.invoke(app, ["retention", "check"]).exit_code == 0


def test_report_formats(env: Env, tmp_path: Path) -> None:
    result = runner.invoke(app, ["retention", "report"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    [camera] = report["cameras"]
    assert camera["camera_id"] == env.camera_id
    assert camera["violations"] == 3
    result = runner.invoke(app, ["retention", "report", "--format", "csv"])
    [row] = list(csv.DictReader(io.StringIO(result.output)))
    assert row["violations"] == "3"
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["retention", "report", "--format", "html", "-o", str(out)])
    assert result.exit_code == 0
    assert "<h1>Retention report</h1>" in out.read_text()
    result = runner.invoke(app, ["retention", "report", "--format", "pdf"])
    assert result.exit_code == 1
    assert result.output.startswith("error: --format")
