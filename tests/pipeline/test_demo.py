"""The demo set-up: idempotent registration of the demo cameras with the file-source fallback,
and the policies they end up with (the facade and faces cameras record, the traffic camera is
live-only)."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from registry import service as registry_service
from registry.models import Camera, SourceKind
from vms.core.config import Settings
from vms.core.models import Organisation
from vms.demo import CAMERAS, ORG_NAME, Demo


def test_demo_registers_its_cameras_once(pipeline_settings: Settings, iso_engine: Engine) -> None:
    demo = Demo(pipeline_settings)
    sources = demo._file_sources(pipeline_settings.resolved_sample_media / "video")
    token, ids = demo._register(sources)
    token_again, ids_again = demo._register(sources)
    assert token.startswith("vms_")
    assert token_again != token
    assert ids == ids_again
    assert list(ids) == [c.name for c in CAMERAS]
    with Session(iso_engine) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Organisation).where(Organisation.name == ORG_NAME)
            )
            == 1
        )
        assert session.scalar(select(func.count()).select_from(Camera)) == 3
        policies = {
            name: registry_service.policy(session=session, camera_id=camera_id)
            for name, camera_id in ids.items()
        }
        cameras = {name: session.get(Camera, camera_id) for name, camera_id in ids.items()}
    assert {n: (p.may_view_live, p.may_record) for n, p in policies.items()} == {
        "Skolgården, fasad": (True, True),
        "Entré, ansikten": (True, True),
        "Gatan, trafik": (True, False),
    }
    for cam in CAMERAS:
        row = cameras[cam.name]
        assert row is not None
        assert row.source_kind is SourceKind.file
        assert row.source_path is not None
        assert row.source_path.endswith(cam.clip)
        assert row.mask_plan_hash is not None
