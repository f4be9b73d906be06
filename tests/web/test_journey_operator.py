"""The operator, in the browser: the live grid shows masked frames of the cameras they may view
(and why another one shows nothing), one camera large with its status, and its recordings on a
timeline with the gap left by a camera outage, played back in the page."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from masking import compile_plan, parse_plan
from sample_streams import RtspServerProcess
from tests.pipeline.conftest import (
    FACADE_PLAN,
    LiveServer,
    committed,
    gaps_of,
    segments_of,
    state_is,
    wait_for,
)
from tests.web.conftest import Org, sign_in
from vms.core.models import Role

FILLED_FACADE: dict[str, Any] = {**FACADE_PLAN, "method": "fill"}
ANON = compile_plan(parse_plan(FILLED_FACADE), 640, 360).anon_mask > 0
INNER_ANON = cv2.erode(ANON.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
INNER_KEPT = cv2.erode((~ANON).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0


def shown_frame(page: Page, selector: str) -> np.ndarray:
    """The frame an <img> shows right now, at its own size, as the browser decoded it."""
    data_url = page.locator(selector).evaluate(
        """img => {
            const c = document.createElement("canvas");
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            c.getContext("2d").drawImage(img, 0, 0);
            return c.toDataURL("image/png");
        }"""
    )
    png = base64.b64decode(data_url.split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return image


def test_operator_journey(
    server: LiveServer,
    org: Org,
    rtsp_server_factory: Callable[..., RtspServerProcess],
    new_page: Callable[..., Page],
    web_engine: Engine,
) -> None:
    rtsp = rtsp_server_factory()
    with committed(web_engine) as f:
        camera = f.camera(
            org.org,
            name="Entré, fasad",
            source={"kind": "rtsp", "url": rtsp.url("/real360")},
            mask_plan=FILLED_FACADE,
        )
        # A camera whose basis is still a draft: nothing of it runs, and the grid says why.
        draft = f.basis(org.org, status="draft")
        blocked = f.camera(
            org.org,
            name="Cykelrum",
            basis=draft,
            source={"kind": "rtsp", "url": rtsp.url("/real360")},
        )
    sup = server.pipeline
    wait_for(state_is(sup, camera.id, "streaming"), 30, "the camera streaming")
    wait_for(lambda: len(segments_of(web_engine, camera.id)) >= 2, 20, "two recorded segments")
    # An outage: the camera goes away for a few seconds and comes back on the same port.
    rtsp.kill()
    wait_for(state_is(sup, camera.id, "reconnecting", "stalled"), 10, "the camera reconnecting")
    time.sleep(1.5)
    before = len(segments_of(web_engine, camera.id))
    rtsp.start()
    wait_for(state_is(sup, camera.id, "streaming"), 30, "streaming again")
    wait_for(lambda: len(segments_of(web_engine, camera.id)) >= before + 2, 20, "new segments")
    wait_for(
        lambda: [g for g in gaps_of(web_engine, camera.id) if g.end is not None],
        10,
        "the outage indexed as a closed gap",
    )

    page = new_page()
    sign_in(page, server, org.users[Role.operator])
    expect(page).to_have_url(f"{server.url}/live")
    # Operators are not offered the register (and the API would refuse it anyway).
    expect(page.get_by_role("navigation", name="Huvudmeny")).not_to_contain_text("Förteckning")

    # -- the live grid: masked frames, and the blocked camera with its reason -----------------
    tile = page.locator(f"figure.tile[data-camera-id='{camera.id}']")
    img = f"figure.tile[data-camera-id='{camera.id}'] img"
    expect(tile).to_contain_text("Strömmar")
    page.wait_for_function(
        "sel => { const i = document.querySelector(sel); return i && i.naturalWidth > 0; }",
        arg=img,
    )
    frame = shown_frame(page, img)
    assert frame.shape == (360, 640)
    assert frame[INNER_ANON].max() <= 40, "anonymised area visible in the live grid"
    assert frame[INNER_KEPT].mean() > 40, "the kept strip is blank"
    other = page.locator(f"figure.tile[data-camera-id='{blocked.id}']")
    expect(other).to_contain_text("Ingen livebild")
    expect(other).to_contain_text("draft")
    expect(other.locator("img")).to_have_count(0)

    # -- one camera large --------------------------------------------------------------------
    tile.get_by_role("link", name="Stor bild").click()
    expect(page).to_have_url(f"{server.url}/live/{camera.id}")
    expect(page.locator("#status-list")).to_contain_text("Strömmar")
    expect(page.locator("#status-list")).to_contain_text("640\u00d7360")
    page.wait_for_function("() => document.querySelector('#live-img').naturalWidth > 0")
    assert shown_frame(page, "#live-img")[INNER_ANON].max() <= 40

    # -- recordings: segments and the gap on the timeline, playback --------------------------
    page.get_by_role("link", name="Inspelningar").last.click()
    expect(page).to_have_url(f"{server.url}/recordings?camera={camera.id}")
    expect(page.locator("#timeline rect.seg").first).to_be_attached()
    expect(page.locator("#timeline rect.gap[data-reason='camera_down']")).to_have_count(1)
    expect(page.locator("#gap-table tbody")).to_contain_text("Kameran nås inte")
    page.locator("#timeline rect.seg").nth(1).click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#player'); "
        "return v.currentTime > 0.2 && !v.paused && v.videoWidth === 640; }",
        timeout=20_000,
    )
    expect(page.locator("#player-caption")).to_contain_text("Segment")
