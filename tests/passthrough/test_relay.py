"""A passthrough camera shared under an agreement: the recipient's client gets the camera's
own H.264 through vms's relay, every frame of it checked before it is forwarded; when the
camera forgets its masks, no unmasked frame reaches the client (the camera falls back to vms's
masking, and the stream goes on masked)."""

from __future__ import annotations

import time
from urllib.parse import quote, urlsplit

import av
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from masking import compile_plan, parse_plan
from masking.incamera import DEFAULT_MASK_COLOR
from tests.passthrough.conftest import PLAN, passthrough_camera, passthrough_settings
from tests.passthrough.test_passthrough import state_of
from tests.peers.onvif_device import MaskingRig
from tests.pipeline.conftest import LiveServer, committed, status_where, wait_for
from tests.sharing.helpers import agreement
from vms.core.config import Settings
from vms.core.models import Organisation, Role

pytestmark = pytest.mark.rtsp
CLIENT_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32768"}


def masked_share(frame: av.VideoFrame) -> tuple[float, float]:
    """Of the plan's anonymised pixels (away from edges): the share masked (in the camera's
    mask colour or in the plan's black fill, once vms masks), and the share in the camera's."""
    rgb = frame.to_ndarray(format="rgb24").astype(np.float64)
    h, w = rgb.shape[:2]
    anon = compile_plan(parse_plan(PLAN), w, h).anon_mask > 0
    inner = np.zeros_like(anon)
    inner[6:-6, 6:-6] = anon[6:-6, 6:-6] & anon[:-12, 6:-6] & anon[12:, 6:-6]
    inner[6:-6, 6:-6] &= anon[6:-6, :-12] & anon[6:-6, 12:]
    px = rgb[inner]
    purple = np.linalg.norm(px - np.array(DEFAULT_MASK_COLOR.rgb()), axis=1) < 60
    black = px.max(axis=1) < 24
    return float((purple | black).mean()), float(purple.mean())


def test_a_shared_passthrough_camera_relays_only_checked_frames(
    masking_rig: MaskingRig, iso_settings: Settings, iso_engine: Engine
) -> None:
    settings = passthrough_settings(iso_settings)
    with committed(iso_engine) as f:
        owner = f.org("Skolfastigheter")
        police = f.org("Polisen RLC")
        officer = f.user(Role.police, police)
    camera = passthrough_camera(iso_engine, masking_rig, org=owner)
    with Session(iso_engine) as session:
        orgs = session.get(Organisation, owner.id), session.get(Organisation, police.id)
        assert orgs[0] is not None
        assert orgs[1] is not None
        agreement(session, orgs[0], orgs[1], [camera])
        session.commit()
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=20) as api:
        wait_for(status_where(server.pipeline, camera.id, lambda v: v.passthrough_checks > 0),
                 30, "a passing check")  # fmt: skip
        r = api.post(f"/api/v1/shared-cameras/{camera.id}/stream-sessions",
                     headers=officer.headers)  # fmt: skip
        assert r.status_code == 201, r.text
        body = r.json()
        parts = urlsplit(body["url"])
        url = (f"rtsp://{body['username']}:{quote(body['password'], safe='')}@{parts.hostname}:"
               f"{parts.port}{parts.path}")  # fmt: skip
        shares: list[tuple[float, tuple[float, float]]] = []
        forgot_at: float | None = None
        with av.open(url, options=CLIENT_OPTIONS, timeout=(10, 10)) as client:
            try:
                for frame in client.decode(video=0):
                    shares.append((time.monotonic(), masked_share(frame)))
                    if len(shares) == 50:
                        masking_rig.forget_masks()  # firmware reset while the police watch
                        forgot_at = time.monotonic()
                    if forgot_at is not None and time.monotonic() - forgot_at > 8:
                        break
            except av.error.FFmpegError:
                pass  # the passthrough worker's feed ended; the transcode worker takes over
        state = state_of(iso_engine, camera.id)
    assert len(shares) >= 50, f"only {len(shares)} frames relayed"
    assert forgot_at is not None
    after = [s for t, s in shares if t > forgot_at]
    print(f"relayed {len(shares)} frames, {len(after)} after the reset")
    # The camera's own frames came through (its mask colour), each one masked; none after the
    # reset was not.
    assert all(camera > 0.95 for _, (_, camera) in shares[:50])
    assert min(m for _, (m, _) in shares) > 0.95, [round(m, 2) for _, (m, _) in shares]
    assert state is not None
    assert state.status.value == "failed"
