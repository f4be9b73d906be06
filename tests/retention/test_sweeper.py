"""The sweep as the server runs it: a background thread with its own sessions."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from retention.models import RetentionSweep, Segment
from retention.sweeper import RetentionSweeper
from tests.factories import Factory
from vms.api import _background_services, create_app
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


def test_the_server_runs_the_sweeper(settings: Settings) -> None:
    app = create_app(settings)
    services = _background_services(app)
    assert any(isinstance(s, RetentionSweeper) for s in services)
