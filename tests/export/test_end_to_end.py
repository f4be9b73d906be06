"""End to end, over HTTP against the whole server: a real RTSP camera recorded masked by the
pipeline, a police request, approval, the package built by the server's export worker, download,
offline verification (vms and openssl), the exported frames still masked, and the audit chain."""

from __future__ import annotations

import datetime as dt
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
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from masking import compile_plan, parse_plan, plan_hash
from sample_streams import RtspServerProcess
from tests.conftest import TEST_KEY
from tests.pipeline.conftest import (
    FACADE_PLAN,
    LiveServer,
    committed,
    segments_of,
    wait_for,
)
from vms.core import audit
from vms.core.config import Settings
from vms.core.models import Role

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]

# Solid fill, so "anonymised" is measurable pixel by pixel (the masking issue's facade check).
FILLED_FACADE: dict[str, Any] = {**FACADE_PLAN, "method": "fill"}
REPO = Path(__file__).resolve().parents[2]


def assert_facade_masked(video: Path, width: int, height: int) -> int:
    """Outside the kept strip every frame is blank; inside it the street is visible."""
    anon = compile_plan(parse_plan(FILLED_FACADE), width, height).anon_mask > 0
    inner_anon = cv2.erode(anon.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    inner_kept = cv2.erode((~anon).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    n = 0
    with av.open(str(video)) as c:
        for n, frame in enumerate(c.decode(video=0), start=1):
            gray = frame.to_ndarray(format="gray")
            assert gray[inner_anon].max() <= 24, f"frame {n}: anonymised area not blank"
            assert gray[inner_kept].mean() > 60, f"frame {n}: kept strip blanked too"
    return n


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vms.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
        timeout=120,
    )


def test_rtsp_camera_to_verified_masked_package(
    rtsp_server: RtspServerProcess,
    iso_settings: Settings,
    iso_engine: Engine,
    isolated_db_url: str,
    tmp_path: Path,
) -> None:
    with committed(iso_engine) as f:
        owner = f.org("Fastighets AB Gården")
        camera = f.camera(
            owner,
            name="Entré Gården",
            source={"kind": "rtsp", "url": rtsp_server.url("/real360")},
            mask_plan=FILLED_FACADE,
        )
        police = f.user(Role.police, f.org("Polisregion Väst"), password=None)
        dpo = f.user(Role.dpo, owner, password=None)

    with LiveServer(iso_settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        segs = wait_for(
            lambda: s if len(s := segments_of(iso_engine, camera.id)) >= 4 else None,
            30,
            "four recorded segments",
        )
        # Cut inside the first and the last segment: the edges need re-encoding.
        start = segs[0].start + dt.timedelta(seconds=0.3)
        end = segs[3].end - dt.timedelta(seconds=0.3)
        near = http.get(
            "/api/v1/cameras/near",
            params={
                "lat": 59.3293,
                "lon": 18.0686,
                "radius_m": 50,
                "start": start.isoformat(),
                "end": end.isoformat(),
            },
            headers=police.headers,
        ).json()
        assert any(c["id"] == camera.id and c["footage"]["available"] for c in near["items"])
        resp = http.post(
            "/api/v1/exports",
            json={
                "case_number": "5000-K987654-25",
                "legal_ground": {
                    "category": "preliminary_investigation",
                    "text": "Förundersökning, RB 23 kap.",
                },
                "officer": "Kim Karlsson",
                "unit": "Utredning Väst",
                "camera_ids": [camera.id],
                "start": start.isoformat(),
                "end": end.isoformat(),
                "reason": "Skadegörelse vid entrén",
            },
            headers=police.headers,
        )
        assert resp.status_code == 201, resp.text
        export_id = resp.json()["id"]
        approved = http.post(f"/api/v1/exports/{export_id}/approve", headers=dpo.headers)
        assert approved.status_code == 200, approved.text

        def ready() -> dict[str, Any] | None:
            view: dict[str, Any] = http.get(
                f"/api/v1/exports/{export_id}", headers=police.headers
            ).json()
            assert view["status"] not in ("failed", "rejected"), view
            return view if view["status"] == "ready" else None

        view = wait_for(ready, 90, "the package to be built by the server")
        download = http.get(f"/api/v1/exports/{export_id}/download", headers=police.headers)
        assert download.status_code == 200
        key_pem = http.get("/api/v1/exports/public-key").content
        closed = http.post(
            f"/api/v1/exports/{export_id}/close",
            json={"reason": "Överlämnat till åklagare"},
            headers=police.headers,
        )
        assert closed.json()["status"] == "closed"

    package = tmp_path / "package.zip"
    package.write_bytes(download.content)
    key = tmp_path / "key.pem"
    key.write_bytes(key_pem)
    assert download.headers["x-package-sha256"] == view["package_sha256"]

    # Offline verification, with nothing but the zip and the key.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMS_")}
    env["PYTHONPATH"] = str(REPO)
    checked = _cli("export", "verify", str(package), "--public-key", str(key), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "case 5000-K987654-25" in checked.stdout

    with zipfile.ZipFile(package) as zf:
        zf.extractall(tmp_path / "pkg")
        manifest = json.loads(zf.read("manifest.json"))
    sig = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin",
         "-in", "manifest.json", "-sigfile", "manifest.sig"],
        cwd=tmp_path / "pkg", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert sig.returncode == 0, sig.stderr
    (cam,) = manifest["cameras"]
    assert cam["mask_plans"][0]["hash"] == plan_hash(FILLED_FACADE)
    assert {s["mask_plan_hash"] for s in cam["segments"]} == {plan_hash(FILLED_FACADE)}
    assert cam["registry"]["name"] == "Entré Gården"
    assert manifest["approved_by"]["email"] == dpo.user.email
    assert cam["video"]["reencoded_frames"] > 0  # the cuts were inside segments
    assert cam["video"]["remuxed_frames"] > 0

    # The exported frames are masked, edges included, and cover the range.
    frames = assert_facade_masked(tmp_path / "pkg" / cam["video"]["file"], 640, 360)
    assert frames == cam["video"]["frames"]
    seconds = (end - start).total_seconds()
    assert frames >= 0.8 * seconds * 10  # the sample stream runs at >= 10 fps

    # The whole story is in the audit log, and the chain holds.
    with Session(iso_engine) as session:
        owner_log = audit.list_entries(session, organisation_ids={owner.id}, limit=1000, offset=0)
        police_log = audit.list_entries(
            session, organisation_ids={police.organisation_id}, limit=1000, offset=0
        )
    story = [
        e.action
        for e in reversed(owner_log[0])
        if e.action.startswith(("export.", "retention.hold"))
    ]
    assert story == [
        "export.requested",
        "retention.hold_created",
        "export.approved",
        "export.build_started",
        "export.built",
        "export.downloaded",
        "export.closed",
        "retention.hold_released",
    ], story
    assert "export.camera_search" in {e.action for e in police_log[0]}
    env |= {"VMS_DATABASE_URL": isolated_db_url, "VMS_SECRET_KEY": TEST_KEY,
            "VMS_DATA_DIR": str(iso_settings.data_dir)}  # fmt: skip
    verified = _cli("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("audit chain OK")
