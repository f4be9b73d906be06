"""Exports of passthrough footage: a range with quarantined segments says so, at request time
and in the signed manifest, and never carries them; a range that is only quarantined is
refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from masking import compile_plan, parse_plan
from registry.models import PassthroughStatus
from retention.models import MaskedBy, SegmentState
from tests.conftest import TEST_KEY
from tests.passthrough.conftest import PLAN, passthrough_camera, passthrough_settings
from tests.passthrough.test_passthrough import state_of
from tests.peers.onvif_device import MaskingRig
from tests.pipeline.conftest import LiveServer, committed, segments_of, wait_for
from vms.core.config import Settings
from vms.core.models import AuditEntry, Role

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def request_body(camera_id: int, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    return {
        "case_number": "5000-K123456-26",
        "legal_ground": {"category": "preliminary_investigation", "text": "RB 23 kap."},
        "officer": "Kim Karlsson",
        "unit": "Utredning Väst",
        "camera_ids": [camera_id],
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reason": "Skadegörelse",
    }


def remask_cli(settings: Settings, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMS_")}
    env |= {"PYTHONPATH": str(REPO), "VMS_DATABASE_URL": db_url, "VMS_SECRET_KEY": TEST_KEY,
            "VMS_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "vms.cli", "footage", "remask", *args],
        capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=120,
    )  # fmt: skip


def test_an_export_over_quarantined_footage_says_so_and_leaves_it_out_until_remasked(
    masking_rig: MaskingRig, iso_settings: Settings, iso_engine: Engine, isolated_db_url: str
) -> None:
    settings = passthrough_settings(iso_settings)
    with committed(iso_engine) as f:
        owner = f.org("Skolfastigheter")
        police = f.user(Role.police, f.org("Polisregion Väst"), password=None)
        dpo = f.user(Role.dpo, owner, password=None)
    camera = passthrough_camera(iso_engine, masking_rig, org=owner)
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        wait_for(
            lambda: len([s for s in segments_of(iso_engine, camera.id)
                         if s.state is SegmentState.ok]) >= 2,
            30,
            "verified segments",
        )  # fmt: skip
        masking_rig.forget_masks()

        def failed() -> bool:
            state = state_of(iso_engine, camera.id)
            return state is not None and state.status is PassthroughStatus.failed

        wait_for(failed, 20, "the failed check")

        def after_fallback() -> list[Any] | None:
            segs = segments_of(iso_engine, camera.id)
            return segs if any(x.masked_by is MaskedBy.vms for x in segs) else None

        segs = wait_for(after_fallback, 30, "footage masked by vms after the fallback")
        (quarantined,) = [s for s in segs if s.state is SegmentState.quarantined]
        start, end = segs[0].start, segs[-1].end

        # Only the quarantined span: nothing may leave.
        middle = quarantined.start + (quarantined.end - quarantined.start) / 2
        only = http.post(
            "/api/v1/exports",
            json=request_body(camera.id, middle - dt.timedelta(milliseconds=5),
                              middle + dt.timedelta(milliseconds=5)),
            headers=police.headers,
        )  # fmt: skip
        assert only.status_code == 422, only.text
        assert only.json()["detail"][0]["code"] == "only_quarantined", only.text

        # The whole range: the request says what will be missing, the package too.
        resp = http.post(
            "/api/v1/exports", json=request_body(camera.id, start, end), headers=police.headers
        )
        assert resp.status_code == 201, resp.text
        (withheld,) = resp.json()["withheld"]
        assert withheld == {
            "camera_id": camera.id,
            "segments": 1,
            "seconds": pytest.approx((quarantined.end - quarantined.start).total_seconds(), 1e-3),
            "reason": "quarantined",
        }
        export_id = resp.json()["id"]
        assert http.get(f"/api/v1/exports/{export_id}", headers=dpo.headers).json()["withheld"]
        assert http.post(f"/api/v1/exports/{export_id}/approve", headers=dpo.headers).is_success

        def ready() -> dict[str, Any] | None:
            view: dict[str, Any] = http.get(
                f"/api/v1/exports/{export_id}", headers=police.headers
            ).json()
            assert view["status"] not in ("failed", "rejected"), view
            return view if view["status"] == "ready" else None

        wait_for(ready, 120, "the package")
        package = http.get(f"/api/v1/exports/{export_id}/download", headers=police.headers)
        assert package.status_code == 200
    with zipfile.ZipFile(io.BytesIO(package.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    (cam,) = manifest["cameras"]
    assert [w["id"] for w in cam["withheld_segments"]] == [quarantined.id]
    assert quarantined.id not in {s["id"] for s in cam["segments"]}
    assert {s["masked_by"] for s in cam["segments"]} == {"camera", "vms"}
    assert any("quarantined" in g["reasons"] for g in cam["gaps"]), cam["gaps"]
    assert any("quarantined" in w for w in manifest["warnings"]), manifest["warnings"]

    # Re-masked by vms with the plan it was recorded under, the span may leave.
    listed = remask_cli(settings, isolated_db_url, "--camera", str(camera.id), "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert f"would re-mask segment {quarantined.id}" in listed.stdout
    done = remask_cli(settings, isolated_db_url, "--camera", str(camera.id), "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["remasked"]
    assert result["segment_id"] == quarantined.id
    (seg,) = [s for s in segments_of(iso_engine, camera.id) if s.id == quarantined.id]
    assert (seg.state, seg.masked_by) == (SegmentState.ok, MaskedBy.vms)
    path = settings.data_dir / seg.path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == seg.sha256 == result["sha256"]
    anon = compile_plan(parse_plan(PLAN), 640, 360).anon_mask > 0
    inner = cv2.erode(anon.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert len(frames) == seg.frames > 0
    # The plan fills with black: the camera's unmasked pixels are gone from the file.
    assert all(g[inner].max() <= 24 for g in frames)
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        again = http.post(
            "/api/v1/exports",
            json=request_body(camera.id, middle - dt.timedelta(milliseconds=5),
                              middle + dt.timedelta(milliseconds=5)),
            headers=police.headers,
        )  # fmt: skip
        assert again.status_code == 201, again.text
        assert again.json()["withheld"] == []
    with Session(iso_engine) as session:
        actions = [a.action for a in session.scalars(select(AuditEntry))]
    assert "recording.remasked" in actions
