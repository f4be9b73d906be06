"""The export worker thread against a real (committed) database: it creates the signing key,
builds approved requests, requeues builds a previous run left half-done, and stops promptly."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Factory
from vms.core import audit, signing
from vms.core.config import Settings
from vms.core.db import make_sessionmaker, utcnow
from vms.core.models import Role
from vms.export import build, service
from vms.export.models import ExportRequest, ExportStatus
from vms.export.schemas import ExportCreate
from vms.export.worker import ExportWorker


def _approved_request(sessions: sessionmaker[Session], settings: Settings) -> int:
    with sessions() as session, session.begin():
        f = Factory(session)
        owner = f.org()
        camera = f.camera(owner)
        t0 = utcnow() - dt.timedelta(minutes=5)
        f.recording(camera, settings.data_dir, start=t0, segments=2, seconds=2)
        police = f.user(Role.police, password=None)
        dpo = f.user(Role.dpo, owner, password=None)
        req = service.create_request(
            session=session,
            actor=police.principal,
            data=ExportCreate.model_validate(
                {
                    "case_number": "5000-K1-25",
                    "legal_ground": {"category": "court_order", "text": "Beslut 2025-03-01"},
                    "officer": "Bo Berg",
                    "unit": "Grova brott",
                    "camera_ids": [camera.id],
                    "start": t0,
                    "end": t0 + dt.timedelta(seconds=3),
                    "reason": "Rån",
                }
            ),
        )
        service.approve(session=session, actor=dpo.principal, export_id=req.id)
        return req.id


def _status(sessions: sessionmaker[Session], export_id: int) -> ExportRequest:
    with sessions() as session:
        req = session.get(ExportRequest, export_id)
        assert req is not None
        return req


def _wait(sessions: sessionmaker[Session], export_id: int, want: ExportStatus) -> ExportRequest:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        req = _status(sessions, export_id)
        if req.status is want:
            return req
        time.sleep(0.1)
    raise AssertionError(f"export {export_id} is {req.status}, not {want}")


def test_worker_builds_approved_requests(iso_engine: Engine, iso_settings: Settings) -> None:
    sessions = make_sessionmaker(iso_engine)
    assert not signing.key_path(iso_settings.data_dir).exists()
    export_id = _approved_request(sessions, iso_settings)
    worker = ExportWorker(sessions=sessions, settings=iso_settings, interval_s=0.1)
    worker.start()
    try:
        assert signing.key_path(iso_settings.data_dir).exists()  # generated on first start
        req = _wait(sessions, export_id, ExportStatus.ready)
    finally:
        worker.stop()
    assert req.package_path is not None
    assert (iso_settings.data_dir / req.package_path).is_file()
    with sessions() as session:
        assert audit.verify_chain(session).ok


def test_interrupted_build_is_requeued_on_start(iso_engine: Engine, iso_settings: Settings) -> None:
    sessions = make_sessionmaker(iso_engine)
    export_id = _approved_request(sessions, iso_settings)
    assert build.claim(session_factory=sessions, export_id=export_id)
    (iso_settings.data_dir / "exports" / ".build-9-abc").mkdir(parents=True)
    assert _status(sessions, export_id).status is ExportStatus.building
    worker = ExportWorker(sessions=sessions, settings=iso_settings, interval_s=0.1)
    worker.start()
    try:
        _wait(sessions, export_id, ExportStatus.ready)
    finally:
        worker.stop()
    assert not (iso_settings.data_dir / "exports" / ".build-9-abc").exists()
    with sessions() as session:
        actions = [
            e.action
            for e in audit.list_entries(
                session, organisation_ids=None, limit=100, offset=0, target_id=str(export_id)
            )[0]
        ]
    assert "export.build_requeued" in actions


def test_stop_during_a_build_queues_it_again(iso_engine: Engine, iso_settings: Settings) -> None:
    sessions = make_sessionmaker(iso_engine)
    export_id = _approved_request(sessions, iso_settings)
    with pytest.raises(build.BuildStopped):
        build.build_package(
            session_factory=sessions,
            settings=iso_settings,
            export_id=export_id,
            should_stop=lambda: True,
        )
    assert _status(sessions, export_id).status is ExportStatus.approved
    assert list((iso_settings.data_dir / "exports").iterdir()) == []
