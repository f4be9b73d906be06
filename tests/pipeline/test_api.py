"""The pipeline's HTTP side against the whole server (uvicorn, pipeline, real RTSP server):
status, MJPEG live view in pieces as a browser gets it, snapshots, mask previews, metrics,
recordings, ONVIF probing, and the audit trail of every view."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from masking import compile_plan, parse_plan
from permits.models import BasisStatus, LegalBasis
from sample_streams import RtspServerProcess
from tests.peers.onvif_device import ONVIF_PASSWORD, ONVIF_USER, OnvifDevice
from tests.pipeline.conftest import (
    FACADE_PLAN,
    LiveServer,
    committed,
    segments_of,
    state_is,
    wait_for,
)
from vms.core.models import AuditEntry, Role

pytestmark = pytest.mark.rtsp

FILLED_FACADE = {**FACADE_PLAN, "method": "fill"}
ANON = compile_plan(parse_plan(FILLED_FACADE), 640, 360).anon_mask > 0
INNER_ANON = cv2.erode(ANON.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0


def mjpeg_frames(response: httpx.Response) -> Iterator[bytes]:
    """JPEGs out of a multipart/x-mixed-replace body, as a browser's <img> takes them."""
    assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
    boundary = response.headers["content-type"].split("boundary=")[1].encode()
    buf = b""
    for chunk in response.iter_bytes():
        buf += chunk
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if not buf.startswith(b"--" + boundary) or head_end < 0:
                break
            headers = dict(
                line.split(": ", 1) for line in buf[:head_end].decode().split("\r\n")[1:]
            )
            length = int(headers["Content-Length"])
            if len(buf) < head_end + 4 + length + 2:
                break
            yield buf[head_end + 4 : head_end + 4 + length]
            buf = buf[head_end + 4 + length + 2 :]


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=20) as c:
        yield c


def audit_entries(engine: Engine, action: str) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def test_live_view_snapshot_preview_status_metrics_and_audit(
    rtsp_server: RtspServerProcess, live_server: LiveServer, api: httpx.Client, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        org = f.org()
        source = {"kind": "rtsp", "url": rtsp_server.url("/real360")}
        camera = f.camera(org, source=source, mask_plan=FILLED_FACADE)
        users = {r: f.user(r, org) for r in Role}
        stranger = f.user(Role.operator)  # another organisation
    base = f"/api/v1/cameras/{camera.id}"
    wait_for(state_is(live_server.pipeline, camera.id, "streaming"), 20, "streaming")

    status = api.get(f"{base}/status", headers=users[Role.dpo].headers)
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["state"] == "streaming"
    assert body["resolution"] == {"width": 640, "height": 360}
    assert body["may_view_live"]
    assert body["may_record"]
    assert api.get(f"{base}/status", headers=users[Role.police].headers).status_code == 403
    assert api.get(f"{base}/status", headers=stranger.headers).status_code == 404

    # Live view: masked JPEGs, counted as a viewer, audited from start to end.
    operator = users[Role.operator]
    with api.stream("GET", f"{base}/live.mjpeg", headers=operator.headers) as live:
        assert live.status_code == 200
        frames = []
        for jpeg in mjpeg_frames(live):
            frames.append(decode(jpeg))
            assert live_server.pipeline.status(camera.id).live_viewers == 1
            if len(frames) == 4:
                break  # closes the connection, as a browser leaving the page does
    for image in frames:
        assert image.shape == (360, 640, 3)
        assert image[INNER_ANON].max() <= 40  # anonymised outside the strip (JPEG noise aside)
        assert image[~ANON].mean() > 40  # the strip shows the scene
    ended = wait_for(lambda: audit_entries(iso_engine, "live.end"), 10, "live.end audited")
    started = audit_entries(iso_engine, "live.start")
    assert [e.actor_id for e in started] == [operator.user.id]
    assert ended[0].actor_id == operator.user.id
    assert ended[0].details["live_session"] == started[0].details["live_session"]
    assert ended[0].details["frames"] >= 4
    assert ended[0].details["duration_s"] > 0
    wait_for(lambda: live_server.pipeline.status(camera.id).live_viewers == 0, 5, "viewer gone")

    # An <img> tag sends no header: a ticket for this camera opens the stream instead.
    ticket = api.post(f"{base}/live-ticket", headers=operator.headers).json()
    assert api.post(f"{base}/live-ticket", headers=users[Role.dpo].headers).status_code == 403
    with api.stream("GET", ticket["live_url"]) as live:
        assert live.status_code == 200
        assert decode(next(mjpeg_frames(live))).shape == (360, 640, 3)
    # A ticket opens one view: replayed (from a log, a browser history) it is refused.
    replay = api.get(ticket["snapshot_url"])
    assert replay.status_code == 401
    assert "used already" in replay.text
    again = api.post(f"{base}/live-ticket", headers=operator.headers).json()
    assert api.get(again["snapshot_url"]).status_code == 200
    fresh = api.post(f"{base}/live-ticket", headers=operator.headers).json()
    other = api.get(f"/api/v1/cameras/{camera.id + 1000}/live.mjpeg?ticket={fresh['ticket']}")
    assert other.status_code == 401
    assert api.get(f"{base}/live.mjpeg").status_code == 401
    wait_for(lambda: len(audit_entries(iso_engine, "live.end")) == 2, 10, "second live.end")

    for role, code in ((Role.dpo, 403), (Role.police, 403), (Role.facility_manager, 200)):
        r = api.get(f"{base}/snapshot.jpg", headers=users[role].headers)
        assert r.status_code == code, (role, r.text)
    assert api.get(f"{base}/live.mjpeg", headers=stranger.headers).status_code == 404
    snap = api.get(f"{base}/snapshot.jpg", headers=operator.headers)
    assert snap.headers["content-type"] == "image/jpeg"
    assert decode(snap.content)[INNER_ANON].max() <= 40
    assert len(audit_entries(iso_engine, "live.snapshot")) == 3

    # Mask preview: raw pixels under the zones for the facility manager, masked for the DPO.
    raw = api.get(f"{base}/mask-preview.png", headers=users[Role.facility_manager].headers)
    masked = api.get(f"{base}/mask-preview.png", headers=users[Role.dpo].headers)
    assert raw.status_code == masked.status_code == 200
    assert raw.headers["content-type"] == "image/png"
    raw_green = decode(raw.content)[INNER_ANON][:, 1].mean()
    masked_green = decode(masked.content)[INNER_ANON][:, 1].mean()
    assert masked_green < 25 < raw_green  # red tint over black vs. over the scene
    previews = audit_entries(iso_engine, "camera.mask_preview")
    assert [(e.actor_id, e.details["raw_frame"]) for e in previews] == [
        (users[Role.facility_manager].user.id, True),
        (users[Role.dpo].user.id, False),
    ]
    assert api.get(f"{base}/mask-preview.png", headers=operator.headers).status_code == 403

    metrics = api.get("/metrics", headers=users[Role.admin].headers)
    assert metrics.status_code == 200
    labels = f'camera_id="{camera.id}",organisation_id="{org.id}"'
    assert f'vms_camera_state{{{labels},state="streaming"}} 1.0' in metrics.text
    assert f"vms_camera_input_fps{{{labels}}}" in metrics.text
    assert "vms_retention_" in metrics.text
    assert api.get("/metrics", headers=operator.headers).status_code == 403

    wait_for(lambda: segments_of(iso_engine, camera.id), 10, "a segment")
    listing = api.get(
        "/api/v1/recordings", params={"camera_id": camera.id}, headers=users[Role.dpo].headers
    )
    assert listing.status_code == 200, listing.text
    assert listing.json()["segments"]
    police = users[Role.police].headers
    refused = api.get("/api/v1/recordings", params={"camera_id": camera.id}, headers=police)
    assert refused.status_code == 403

    # One segment, played: the bytes are what the index hashed; one audit entry per viewing.
    segment = listing.json()["segments"][0]
    video_url = f"/api/v1/recordings/{segment['id']}/video"
    video = api.get(video_url, headers=operator.headers)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert hashlib.sha256(video.content).hexdigest() == segment["sha256"]
    seek = api.get(video_url, headers={**operator.headers, "Range": "bytes=100-199"})
    assert seek.status_code == 206
    assert seek.content == video.content[100:200]
    views = audit_entries(iso_engine, "recording.view")
    assert [(e.actor_id, e.details["segment_id"]) for e in views] == [
        (operator.user.id, segment["id"])
    ]
    assert api.get(video_url, headers=police).status_code == 403
    assert api.get(video_url, headers=stranger.headers).status_code == 404


def test_live_only_camera_writes_nothing_and_policy_revocation_ends_the_view(
    rtsp_server: RtspServerProcess,
    live_server: LiveServer,
    api: httpx.Client,
    iso_engine: Engine,
    iso_settings: Any,
) -> None:
    with committed(iso_engine) as f:
        org = f.org()
        camera = f.camera(
            org,
            source={"kind": "rtsp", "url": rtsp_server.url("/real360")},
            mask_plan=FACADE_PLAN,
            mode="live",
        )
        operator = f.user(Role.operator, org)
    data_dir: Path = iso_settings.data_dir
    before = {p for p in data_dir.rglob("*") if p.is_file()}
    base = f"/api/v1/cameras/{camera.id}"
    wait_for(state_is(live_server.pipeline, camera.id, "streaming"), 20, "streaming")
    with api.stream("GET", f"{base}/live.mjpeg", headers=operator.headers) as live:
        for frames, _ in enumerate(mjpeg_frames(live), start=1):
            if frames == 10:
                with Session(iso_engine) as session:
                    basis = session.get(LegalBasis, camera.legal_basis_id)
                    assert basis is not None
                    basis.status = BasisStatus.revoked
                    session.commit()
                revoked = time.monotonic()
        # The server ended the stream: the policy no longer allows live view.
        assert time.monotonic() - revoked < 4
    end = wait_for(lambda: audit_entries(iso_engine, "live.end"), 10, "live.end audited")[0]
    assert end.details["ended_by"] == "policy"
    refused = api.get(f"{base}/live.mjpeg", headers=operator.headers)
    assert refused.status_code == 409
    assert refused.json()["detail"][0]["code"] == "live_not_allowed"
    assert "revoked" in refused.json()["detail"][0]["msg"]
    # A live-only camera has no write path: nothing of it reached the data folder.
    assert not (data_dir / "recordings" / str(camera.id)).exists()
    assert {p for p in data_dir.rglob("*") if p.is_file()} - before <= {
        data_dir / ".retention.lock"
    }


def test_live_view_runs_at_the_configured_rate(
    rtsp_server: RtspServerProcess, live_server: LiveServer, api: httpx.Client, iso_engine: Engine
) -> None:
    """live_fps 10 out of a 25 fps camera gives 10 pictures a second, not every third frame
    (8.3/s), which a since-the-last-picture rule on the worker and a poll at the same rate on
    the HTTP side gave."""
    with committed(iso_engine) as f:
        org = f.org()
        source = {"kind": "rtsp", "url": rtsp_server.url("/real360")}
        camera = f.camera(org, source=source, mask_plan=FACADE_PLAN, mode="live")
        operator = f.user(Role.operator, org)
    base = f"/api/v1/cameras/{camera.id}"
    wait_for(state_is(live_server.pipeline, camera.id, "streaming"), 20, "streaming")
    arrived: list[float] = []
    with api.stream("GET", f"{base}/live.mjpeg", headers=operator.headers) as live:
        for _ in mjpeg_frames(live):
            arrived.append(time.monotonic())
            if len(arrived) == 51:
                break
    # The first pictures can be a backlog of the connection's start: count from the 11th.
    rate = (len(arrived) - 11) / (arrived[-1] - arrived[10])
    assert 9.3 <= rate <= 10.7, rate


def test_onvif_probe(onvif_device: OnvifDevice, api: httpx.Client, iso_engine: Engine) -> None:
    with committed(iso_engine) as f:
        manager = f.user(Role.facility_manager)
    body = {"host": onvif_device.host, "port": onvif_device.port, "username": ONVIF_USER}
    ok = api.post(
        "/api/v1/onvif/probe", json={**body, "password": ONVIF_PASSWORD}, headers=manager.headers
    )
    assert ok.status_code == 200, ok.text
    result = ok.json()
    assert result["device"]["model"] == "PeerCam 2"
    assert {p["token"] for p in result["profiles"]} == {"sub", "main"}
    assert result["recommended_profile_token"] == "main"
    assert ONVIF_PASSWORD not in ok.text
    assert "Pa55" not in ok.text
    bad = api.post(
        "/api/v1/onvif/probe", json={**body, "password": "Wr0ng-pass"}, headers=manager.headers
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["code"] == "onvif_auth"
    assert "Wr0ng" not in bad.text
    assert [e.details["profiles"] for e in audit_entries(iso_engine, "onvif.probe")] == [2]


def test_preview_of_a_camera_without_live_view_is_masked_for_everyone(
    rtsp_server: RtspServerProcess, live_server: LiveServer, api: httpx.Client, iso_engine: Engine
) -> None:
    # The school case: recording only, no live view. Raw pixels under the zones would be one.
    with committed(iso_engine) as f:
        org = f.org()
        source = {"kind": "rtsp", "url": rtsp_server.url("/real360")}
        camera = f.camera(org, source=source, mask_plan=FILLED_FACADE, mode="recording")
        manager = f.user(Role.facility_manager, org)
    base = f"/api/v1/cameras/{camera.id}"
    wait_for(state_is(live_server.pipeline, camera.id, "streaming"), 20, "streaming")
    preview = api.get(f"{base}/mask-preview.png", headers=manager.headers)
    assert preview.status_code == 200, preview.text
    assert decode(preview.content)[INNER_ANON][:, 1].mean() < 25  # tint over black, not scene
    entries = audit_entries(iso_engine, "camera.mask_preview")
    assert [(e.actor_id, e.details["raw_frame"]) for e in entries] == [(manager.user.id, False)]
