"""Shared fixtures. The same suite runs on SQLite (default) and on PostgreSQL
(`VMS_TEST_DATABASE_URL=postgresql+psycopg://...`, set by `make test`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from sample_streams import find_sample_media
from tests.factories import Factory
from vms.all_models import Base
from vms.api import create_app
from vms.core.config import PipelineSettings, Settings, SharingSettings, generate_key
from vms.core.db import make_engine
from vms.core.deps import get_session

pytest_plugins = ["tests.peers.rtsp", "tests.peers.onvif_device"]

PG_URL = os.environ.get("VMS_TEST_DATABASE_URL")
TEST_KEY = generate_key().decode()
SAMPLE_MEDIA = find_sample_media()

# Short enough for a quick suite, long enough for a loaded 2-core CI box.
FAST_PIPELINE = PipelineSettings(
    segment_seconds=1.0,
    open_timeout_s=2.0,
    read_timeout_s=2.0,
    stall_seconds=4.0,
    backoff_initial_s=0.2,
    backoff_max_s=1.0,
    restart_budget=5,
    restart_window_s=60.0,
    live_fps=10.0,
)


def make_settings(data_dir: Path, db_url: str, **overrides: Any) -> Settings:
    """The settings every test app, worker and CLI run uses (one place, one key)."""
    values: dict[str, Any] = {
        "profile": "test",
        "data_dir": data_dir,
        "database_url": db_url,
        "secret_key": SecretStr(TEST_KEY),
        "sample_media_dir": SAMPLE_MEDIA,
        # Issue 14: each test server's RTSP relay on a port of its own.
        "sharing": SharingSettings(rtsp_port=0),
    }
    return Settings(**(values | overrides))


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite'}"


# Pure frame work never touches the database; the PostgreSQL pass deselects it (-m "not nodb").
_NODB = (
    "masking",
    "pipeline/test_source.py",
    "pipeline/test_onvif.py",
    "pipeline/test_pacing.py",
    "pipeline/test_frames.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        rel = Path(str(item.fspath)).relative_to(root).as_posix()
        if any(rel == p or rel.startswith(p + "/") for p in _NODB):
            item.add_marker(pytest.mark.nodb)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """In CI a skipped test is a failure: nothing may be silently left out."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (not allowed): {report.longrepr}"
    return None


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if PG_URL:
        return PG_URL
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test: commits inside the
    code under test become SAVEPOINT releases."""
    conn = engine.connect()
    outer = conn.begin()
    sess = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield sess
    finally:
        sess.close()
        if outer.is_active:
            outer.rollback()
        conn.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def settings(data_dir: Path, db_url: str) -> Settings:
    return make_settings(data_dir, db_url)


@pytest.fixture
def app(settings: Settings, engine: Engine, session: Session) -> FastAPI:
    application = create_app(settings, engine=engine)

    def _session() -> Iterator[Session]:
        # Like vms.core.deps.get_session: a failed request is rolled back, but only its own
        # work (a SAVEPOINT per request), not the test's set-up, so one refused request does not
        # poison the next one on PostgreSQL.
        request_tx = session.begin_nested()
        try:
            yield session
        except BaseException:
            if request_tx.is_active:
                request_tx.rollback()
            raise
        if request_tx.is_active:
            request_tx.commit()
        session.commit()

    application.dependency_overrides[get_session] = _session
    return application


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def factory(session: Session) -> Factory:
    return Factory(session)


@pytest.fixture
def isolated_db_url(tmp_path: Path) -> Iterator[str]:
    """A database of its own with committed data, for tests that span processes (pipeline
    workers, CLI subprocesses). SQLite: a file; PostgreSQL: a fresh database, dropped after."""
    if not PG_URL:
        url = f"sqlite:///{tmp_path / 'isolated.db'}"
        eng = make_engine(url)
        Base.metadata.create_all(eng)
        eng.dispose()
        yield url
        return
    name = f"vms_iso_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    eng = make_engine(url)
    Base.metadata.create_all(eng)
    eng.dispose()
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def iso_engine(isolated_db_url: str) -> Iterator[Engine]:
    """An engine on the isolated database (what a worker or CLI run sees)."""
    eng = make_engine(isolated_db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def iso_settings(isolated_db_url: str, data_dir: Path) -> Settings:
    """Settings on the isolated database with the quick pipeline timings: for tests that run
    workers, the whole server or the CLI in other processes."""
    return make_settings(data_dir, isolated_db_url, pipeline=FAST_PIPELINE)
