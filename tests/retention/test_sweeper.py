"""The sweep as the server runs it: a background thread with its own sessions."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from retention.models import RetentionSweep, Segment
from retention.receipts import list_receipts
from retention.sweeper import RetentionSweeper
from tests.factories import Factory
from vms.api import create_app
from vms.core.config import RetentionSettings, Settings
from vms.core.db import make_engine, make_sessionmaker, utcnow

H = dt.timedelta(hours=1)


def test_sweeper_runs_periodically_and_stops(isolated_db_url: str, tmp_path: Path) -> None:
    engine = make_engine(isolated_db_url)
    data_dir = tmp_path / "data"
    with Session(engine, expire_on_commit=False) as session:
        factory = Factory(session)
        camera = factory.camera(retention_hours=1)
        factory.segment(camera, start=utcnow() - 5 * H, data_dir=data_dir)
        session.commit()
    sweeper = RetentionSweeper(
        sessions=make_sessionmaker(engine),
        data_dir=data_dir,
        settings=RetentionSettings(sweep_interval_s=0.05, batch_size=10, disk_free_floor_bytes=0),
        first_run_delay_s=0.0,
    )
    sweeper.start()
    try:
        deadline = time.monotonic() + 20
        while sweeper.runs < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sweeper.stop(timeout=10)
    assert sweeper.runs >= 3
    assert sweeper.last_report is not None
    assert not sweeper.last_report.skipped
    with Session(engine) as session:
        assert session.scalar(select(func.count(Segment.id))) == 0
        assert (session.scalar(select(func.count(RetentionSweep.id))) or 0) >= 3
    runs = sweeper.runs
    time.sleep(0.2)
    assert sweeper.runs == runs  # stopped means stopped
    engine.dispose()


def test_the_server_sweeps_footage_past_retention(
    iso_settings: Settings, iso_engine: Engine
) -> None:
    """Started as `vms serve` starts it (the app's lifespan), the server deletes footage past
    retention on its own and leaves a receipt for it."""
    with Session(iso_engine, expire_on_commit=False) as session:
        factory = Factory(session)
        camera = factory.camera(retention_hours=1)
        old = factory.segment(camera, start=utcnow() - 5 * H, data_dir=iso_settings.data_dir)
        kept = factory.segment(camera, start=utcnow() - 0.2 * H, data_dir=iso_settings.data_dir)
        session.commit()
    settings = iso_settings.model_copy(
        update={
            "pipeline": iso_settings.pipeline.model_copy(update={"enabled": False}),
            "retention": RetentionSettings(sweep_interval_s=0.1, disk_free_floor_bytes=0),
        }
    )
    app = create_app(settings, run_background=True)
    try:
        with TestClient(app):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with Session(iso_engine) as session:
                    if session.get(Segment, old.id) is None:
                        break
                time.sleep(0.05)
    finally:
        app.state.engine.dispose()
    with Session(iso_engine) as session:
        assert session.get(Segment, old.id) is None, "the server did not sweep"
        assert session.get(Segment, kept.id) is not None
        receipts, _ = list_receipts(session=session, principal=None, camera_id=camera.id)
    assert [r.segment_id for r in receipts] == [old.id]
    assert not (iso_settings.data_dir / old.path).exists()
