"""Issue 14 end to end, against the real GStreamer RTSP camera and vms's real relay: a city
shares a live-only, masked traffic camera with the police; the police's control-room client
(PyAV) pulls masked H.264 at full frame rate; a third organisation is refused; revoking the
agreement closes the stream within the stated bound; the register names the police; the audit
log and the DPO's report have the session; nothing is written to disk."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import av
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine

from sample_streams import RtspServerProcess
from tests.pipeline.conftest import LiveServer, committed, state_is, wait_for
from tests.pipeline.test_api import audit_entries
from tests.sharing.helpers import PDF, create_body
from vms.core.config import Settings
from vms.core.models import Role

pytestmark = pytest.mark.rtsp

SOURCE_FPS = 25  # tests.peers.rtsp.CLIP_FPS
# The traffic camera's plan: the top-left quarter (a pavement, say) is filled black.
TRAFFIC_PLAN: dict[str, Any] = {
    "version": 1,
    "method": "fill",
    "default": "keep",
    "zones": [
        {
            "type": "polygon",
            "action": "anonymise",
            "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]],
        }
    ],
}
CLIENT_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32768"}


def _masked(frame: av.VideoFrame) -> tuple[float, float]:
    """(mean, std) of luma well inside the masked quarter (clear of codec edge effects)."""
    y = frame.to_ndarray(format="gray")
    h, w = y.shape
    inner = y[8 : h // 2 - 8, 8 : w // 2 - 8].astype(np.float32)
    return float(inner.mean()), float(inner.std())


def _kept_std(frame: av.VideoFrame) -> float:
    y = frame.to_ndarray(format="gray")
    h, w = y.shape
    return float(y[h // 2 + 8 :, w // 2 + 8 :].astype(np.float32).std())


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=20) as c:
        yield c


def test_police_control_room_gets_masked_live_h264_until_the_agreement_is_revoked(
    rtsp_server: RtspServerProcess,
    live_server: LiveServer,
    api: httpx.Client,
    iso_engine: Engine,
    iso_settings: Settings,
) -> None:
    camera_url = rtsp_server.url("/real360")
    with committed(iso_engine) as f:
        city = f.org("Göteborgs Stad")
        police = f.org("Polisen Region Väst RLC")
        third = f.org("Västtrafik")
        manager = f.user(Role.facility_manager, city)
        dpo = f.user(Role.dpo, city, dpo_orgs=[city])
        officer = f.user(Role.police, police)
        outsider = f.user(Role.operator, third)
        basis = f.basis(city, live_view_allowed=True, recording_allowed=False)
        camera = f.camera(city, basis=basis, name="Korsvägen", mode="live",
                          purpose_category="traffic_management", mask_plan=TRAFFIC_PLAN,
                          source={"kind": "rtsp", "url": camera_url})  # fmt: skip
    relay = live_server.app.state.relay
    assert relay.running, relay.error

    # The owner's facility manager drafts it, attaches the PDF; the owner's DPO puts it in force.
    r = api.post("/api/v1/sharing-agreements", headers=manager.headers,
                 json=create_body(police.id, [camera.id]))  # fmt: skip
    assert r.status_code == 201, r.text
    agreement_id = r.json()["id"]
    doc = api.post(f"/api/v1/sharing-agreements/{agreement_id}/documents", headers=manager.headers,
                   files={"file": ("avtal.pdf", PDF, "application/pdf")})  # fmt: skip
    assert doc.status_code == 201, doc.text
    refused = api.post(f"/api/v1/sharing-agreements/{agreement_id}/status",
                       headers=manager.headers, json={"status": "in_force"})  # fmt: skip
    assert refused.status_code == 403  # the facility manager does not put it in force
    r = api.post(f"/api/v1/sharing-agreements/{agreement_id}/status", headers=dpo.headers,
                 json={"status": "in_force"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["in_force_now"] is True

    # The register names the police as recipient (no fixed text).
    entry = next(e for e in api.get("/api/v1/register", headers=dpo.headers).json()["entries"]
                 if e["camera_id"] == camera.id)  # fmt: skip
    assert (
        f"Polisen Region Väst RLC (sharing agreement {agreement_id}: live video"
        in (entry["recipients"])
    )
    assert "Police Authority and prosecutors on request" not in entry["recipients"]  # live-only

    # The police see the camera among those shared with them; the third organisation does not.
    shared = api.get("/api/v1/shared-cameras", headers=officer.headers).json()
    assert [c["camera_id"] for c in shared["items"]] == [camera.id]
    assert shared["items"][0]["recordings_shared"] is False
    assert api.get("/api/v1/shared-cameras", headers=outsider.headers).json()["total"] == 0
    wait_for(state_is(live_server.pipeline, camera.id, "streaming"), 20, "camera streaming")
    no = api.post(f"/api/v1/shared-cameras/{camera.id}/stream-sessions", headers=outsider.headers)
    assert no.status_code == 404, no.text

    opened = api.post(f"/api/v1/shared-cameras/{camera.id}/stream-sessions",
                      headers=officer.headers)  # fmt: skip
    assert opened.status_code == 201, opened.text
    creds = opened.json()
    assert creds["agreement_id"] == agreement_id
    assert urlsplit(creds["url"]).username is None  # credentials never in the URL handed out
    parts = urlsplit(creds["url"])
    with_creds = (
        f"rtsp://{quote(creds['username'])}:{quote(creds['password'], safe='')}@"
        f"{parts.hostname}:{parts.port}{parts.path}"
    )
    wrong = f"rtsp://{creds['username']}:wrong-password@{parts.hostname}:{parts.port}{parts.path}"
    with pytest.raises(av.error.HTTPUnauthorizedError):
        av.open(wrong, options=CLIENT_OPTIONS, timeout=(5, 5))

    # The relay keeps streams in memory: its private directory holds its socket, nothing else.
    assert os.listdir(Path(relay.ingest_path).parent) == ["ingest.sock"]

    # The control room's client: PyAV over RTSP/TCP, as its software would.
    started = time.monotonic()
    arrivals: list[float] = []
    masked: list[tuple[float, float]] = []
    kept: list[float] = []
    revoked_at: float | None = None
    with av.open(with_creds, options=CLIENT_OPTIONS, timeout=(5, 5)) as client:
        stream = client.streams.video[0]
        assert stream.codec_context.name == "h264"
        try:
            for frame in client.decode(stream):
                arrivals.append(time.monotonic())
                if len(arrivals) % 10 == 0:
                    masked.append(_masked(frame))
                    kept.append(_kept_std(frame))
                if len(arrivals) == 100 and revoked_at is None:
                    revoke = {"status": "revoked", "reason": "avtalet sagt upp"}
                    r = api.post(f"/api/v1/sharing-agreements/{agreement_id}/status",
                                 headers=dpo.headers, json=revoke)  # fmt: skip
                    assert r.status_code == 200, r.text
                    revoked_at = time.monotonic()
                assert revoked_at is None or time.monotonic() - revoked_at < 15, "never closed"
        except av.error.FFmpegError:
            pass  # the relay closed the connection: what revocation does
    closed_after = time.monotonic() - (revoked_at or 0)
    first_frame_s = arrivals[0] - started
    # Full frame rate in steady state (past the client's start-up burst).
    steady = arrivals[20:100]
    fps = (len(steady) - 1) / (steady[-1] - steady[0])
    print(f"\nrelay: first frame after {first_frame_s:.2f}s, {fps:.1f} fps, "
          f"closed {closed_after:.2f}s after revocation")  # fmt: skip
    assert fps >= 0.9 * SOURCE_FPS, f"{fps:.1f} fps from a {SOURCE_FPS} fps camera"
    assert all(mean < 32 and std < 4 for mean, std in masked), masked  # black, flat
    assert min(kept) > 10, kept  # the rest of the picture is there
    bound = iso_settings.sharing.recheck_s + 1.5
    assert closed_after < bound, f"stream went on {closed_after:.2f}s after revocation"

    # Audit: start and end of the session, with agreement, camera, user, from and until.
    start = audit_entries(iso_engine, "sharing.session.start")
    assert [(e.actor_id, e.details["agreement_id"], e.details["camera_id"]) for e in start] == [
        (officer.user.id, agreement_id, camera.id)
    ]
    end = wait_for(lambda: audit_entries(iso_engine, "sharing.session.end"), 10, "session end")
    details = end[0].details
    assert end[0].actor_id == officer.user.id
    assert details["ended_by"] == "agreement_revoked"
    assert details["agreement_id"] == agreement_id
    assert dt.datetime.fromisoformat(details["until"]) > dt.datetime.fromisoformat(details["from"])
    assert details["viewed_s"] > 3.0

    # The owner DPO's report on the agreement.
    report = api.get(f"/api/v1/sharing-agreements/{agreement_id}/report", headers=dpo.headers)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["sessions"] == 1
    assert body["open_sessions"] == 0
    assert body["by_user"][0]["user_email"] == officer.user.email
    assert body["hours_viewed"] > 3.0 / 3600

    # A live-only camera has no write path: no footage, no stream file, in the data dir or the
    # relay's directory (which is gone with the relay's socket once the server stops).
    files = [p for p in Path(iso_settings.data_dir).rglob("*") if p.is_file()]
    video = {".mp4", ".partial", ".h264", ".ts", ".m4s", ".m3u8", ".mkv"}
    assert not [p for p in files if p.suffix in video or "recordings" in p.parts], files
    assert any(p.suffix == ".pdf" for p in files), "the agreement's document is stored"


def _watch(url: str, act: Any, after: int = 25) -> float:
    """Pull `url`, `act()` after `after` frames, return how long the stream went on after."""
    acted: float | None = None
    with av.open(url, options=CLIENT_OPTIONS, timeout=(5, 5)) as client:
        try:
            for n, _frame in enumerate(client.decode(video=0)):
                if n == after:
                    act()
                    acted = time.monotonic()
                assert acted is None or time.monotonic() - acted < 15, "never closed"
        except av.error.FFmpegError:
            pass
    assert acted is not None
    return time.monotonic() - acted


def _open(api: httpx.Client, camera_id: int, headers: dict[str, str]) -> tuple[int, str]:
    r = api.post(f"/api/v1/shared-cameras/{camera_id}/stream-sessions", headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    parts = urlsplit(body["url"])
    url = (f"rtsp://{body['username']}:{quote(body['password'], safe='')}@{parts.hostname}:"
           f"{parts.port}{parts.path}")  # fmt: skip
    return body["id"], url


def test_ending_a_session_or_revoking_the_token_closes_the_stream(
    rtsp_server: RtspServerProcess,
    live_server: LiveServer,
    api: httpx.Client,
    iso_engine: Engine,
    iso_settings: Settings,
) -> None:
    from tests.sharing.helpers import agreement

    with committed(iso_engine) as f:
        city, police = f.org(), f.org()
        camera = f.camera(city, mode="live", mask_plan=TRAFFIC_PLAN,
                          source={"kind": "rtsp", "url": rtsp_server.url("/real360")})  # fmt: skip
        agreement(f.session, city, police, [camera])
        officer = f.user(Role.police, police)
    wait_for(state_is(live_server.pipeline, camera.id, "streaming"), 20, "camera streaming")

    session_id, url = _open(api, camera.id, officer.headers)
    ended = _watch(url, lambda: api.delete(f"/api/v1/stream-sessions/{session_id}",
                                           headers=officer.headers).raise_for_status())  # fmt: skip
    assert ended < 1.0, ended
    _, url = _open(api, camera.id, officer.headers)
    revoked = _watch(url, lambda: api.post("/api/v1/auth/revoke",
                                           headers=officer.headers).raise_for_status())  # fmt: skip
    assert revoked < iso_settings.sharing.recheck_s + 1.5, revoked
    ends = wait_for(
        lambda: e if len(e := audit_entries(iso_engine, "sharing.session.end")) == 2 else None,
        10,
        "two session ends",
    )
    assert [e.details["ended_by"] for e in ends] == ["client", "token_invalid"]
