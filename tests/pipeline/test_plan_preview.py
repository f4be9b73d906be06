"""POST /cameras/{id}/mask-preview: an unsaved plan tried on a fresh frame of a real RTSP camera,
never showing a caller more than the live view would (raw pixels only for facility managers and
admins where live view is allowed; everyone else gets the stored plan's masking first)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from masking import compile_plan, parse_plan, plan_hash
from sample_streams import RtspServerProcess
from tests.conftest import TEST_KEY
from tests.pipeline.conftest import FACADE_PLAN, committed
from vms.api import create_app
from vms.core.config import Settings
from vms.core.models import AuditEntry, Role

pytestmark = pytest.mark.rtsp

FILLED_FACADE: dict[str, Any] = {**FACADE_PLAN, "method": "fill"}
ANON = compile_plan(parse_plan(FILLED_FACADE), 640, 360).anon_mask > 0
INNER_ANON = cv2.erode(ANON.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
ALL_BLACK = {"version": 1, "default": "anonymise", "method": "fill"}


@pytest.fixture
def client(isolated_db_url: str, data_dir: Path) -> Iterator[TestClient]:
    # No pipeline running: the route decodes its frame from the source in a child process.
    settings = Settings(
        profile="test",
        data_dir=data_dir,
        database_url=isolated_db_url,
        secret_key=SecretStr(TEST_KEY),
    )
    app = create_app(settings)
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


def gray(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return image


def test_unsaved_plan_preview_follows_the_live_view_rule(
    rtsp_server: RtspServerProcess, client: TestClient, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        org = f.org()
        source = {"kind": "rtsp", "url": rtsp_server.url("/real360")}
        camera = f.camera(org, source=source, mask_plan=FILLED_FACADE)
        school = f.camera(org, source=source, mask_plan=FILLED_FACADE, mode="recording")
        manager = f.user(Role.facility_manager, org)
        dpo = f.user(Role.dpo, org)
    url = f"/api/v1/cameras/{camera.id}/mask-preview"
    bare = {"plan": None, "apply": False, "overlay": False}

    # The facility manager sets a plan up on the raw picture (live view is allowed here).
    raw = client.post(url, json=bare, headers=manager.headers)
    assert raw.status_code == 200, raw.text
    assert raw.headers["content-type"] == "image/png"
    assert raw.headers["x-raw-frame"] == "1"
    assert gray(raw.content).shape == (360, 640)
    assert gray(raw.content)[INNER_ANON].mean() > 40  # the scene, unmasked

    # The DPO may preview, but asking for "no masking" still shows the stored plan's masking.
    masked = client.post(url, json={**bare, "plan": {}}, headers=dpo.headers)
    assert masked.status_code == 200, masked.text
    assert masked.headers["x-raw-frame"] == "0"
    assert gray(masked.content)[INNER_ANON].max() <= 40

    # The unsaved plan is applied to the picture: here it blacks out everything.
    black = client.post(
        url, json={**bare, "plan": ALL_BLACK, "apply": True}, headers=manager.headers
    )
    assert black.status_code == 200
    assert gray(black.content).max() <= 40

    # A recording-only camera has no live view: nobody gets its raw pixels, not even its manager.
    school_raw = client.post(
        f"/api/v1/cameras/{school.id}/mask-preview", json=bare, headers=manager.headers
    )
    assert school_raw.status_code == 200
    assert school_raw.headers["x-raw-frame"] == "0"
    assert gray(school_raw.content)[INNER_ANON].max() <= 40

    # A broken plan is a 422 naming the field under `plan`, before any frame is decoded.
    bad = client.post(
        url,
        json={
            "plan": {
                "zones": [
                    {
                        "type": "facade_strip",
                        "action": "keep",
                        "facade": [[0, 0], [1, 0]],
                        "width_m": 2,
                    }
                ]
            }
        },
        headers=manager.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "plan.zones.0"

    with Session(iso_engine) as session:
        entries = list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "camera.mask_preview")
                .order_by(AuditEntry.seq)
            )
        )
    assert [(e.actor_id, e.details["raw_frame"]) for e in entries] == [
        (manager.user.id, True),
        (dpo.user.id, False),
        (manager.user.id, True),
        (manager.user.id, False),
    ]
    assert entries[2].details["unsaved_plan_hash"] == plan_hash(ALL_BLACK)
