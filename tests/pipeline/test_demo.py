"""The demo set-up as `make run` uses it: demo cameras registered once however often the server
starts, served by the real GStreamer RTSP server, with the policies they should have (the
facade and faces cameras record, the traffic camera is live-only)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from registry import service as registry_service
from registry.models import Camera, SourceKind
from tests.peers.rtsp import require_rtsp_tools
from vms.core.config import Settings
from vms.core.models import Organisation
from vms.demo import CAMERAS, ORG_NAME, Demo

pytestmark = pytest.mark.rtsp


def test_demo_registers_its_cameras_once(
    iso_settings: Settings, iso_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    require_rtsp_tools()
    first = Demo(iso_settings)
    first.start()
    try:
        printed = capsys.readouterr().out
    finally:
        first.stop()
    again = Demo(iso_settings)
    again.start()
    again.stop()
    assert "export TOKEN=vms_" in printed
    with Session(iso_engine) as session:
        orgs = select(func.count()).select_from(Organisation).where(Organisation.name == ORG_NAME)
        assert session.scalar(orgs) == 1
        cameras = {c.name: c for c in session.scalars(select(Camera).order_by(Camera.id))}
        policies = {
            name: registry_service.policy(session=session, camera_id=c.id)
            for name, c in cameras.items()
        }
    assert list(cameras) == [c.name for c in CAMERAS]
    assert {n: (p.may_view_live, p.may_record) for n, p in policies.items()} == {
        "Skolgården, fasad": (True, True),
        "Entré, ansikten": (True, True),
        "Gatan, trafik": (True, False),
    }
    for cam in CAMERAS:
        row = cameras[cam.name]
        assert row.source_kind is SourceKind.rtsp
        assert row.source_url is not None
        assert row.source_url.endswith(cam.mount)
        assert row.mask_plan_hash is not None
