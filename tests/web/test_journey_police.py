"""The police investigator, in the browser: search the registry around an incident (the map has
no tiles here, so the coordinate view), request an export from the results, follow its status,
download the package, and verify it offline with the public key the page shows."""

from __future__ import annotations

import datetime as dt
import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from sample_streams import RtspServerProcess
from tests.pipeline.conftest import FACADE_PLAN, LiveServer, committed, segments_of, wait_for
from tests.web.conftest import PASSWORD, TIMEZONE, Org, sign_in
from vms.core.models import Role
from vms.export.verify import verify_package

FILLED_FACADE: dict[str, Any] = {**FACADE_PLAN, "method": "fill"}
INCIDENT = (57.70887, 11.97456)  # Göteborg


def local(at: dt.datetime) -> str:
    """A time as the users' datetime-local inputs take it."""
    return at.astimezone(ZoneInfo(TIMEZONE)).strftime("%Y-%m-%dT%H:%M:%S")


def test_police_journey(
    server: LiveServer,
    org: Org,
    rtsp_server: RtspServerProcess,
    new_page: Callable[..., Page],
    web_engine: Engine,
    tmp_path: Path,
) -> None:
    with committed(web_engine) as f:
        camera = f.camera(
            org.org,
            name="Brunnsparken, entré",
            lat=INCIDENT[0] + 0.0003,  # ~33 m north
            lon=INCIDENT[1],
            source={"kind": "rtsp", "url": rtsp_server.url("/real360")},
            mask_plan=FILLED_FACADE,
        )
        far = f.camera(org.org, name="Långt bort", lat=INCIDENT[0] + 0.05, lon=INCIDENT[1])
        police = f.user(Role.police, f.org("Polisregion Väst"), password=PASSWORD)
    segs = wait_for(
        lambda: s if len(s := segments_of(web_engine, camera.id)) >= 4 else None,
        40,
        "four recorded segments",
    )
    start = segs[0].start + dt.timedelta(seconds=1)
    end = segs[3].end - dt.timedelta(seconds=0.5)

    page = new_page()
    sign_in(page, server, police)
    expect(page).to_have_url(f"{server.url}/search")
    # No tile server answers here: the page says so and shows the coordinate view instead.
    expect(page.locator("#plot")).to_be_visible(timeout=10_000)
    expect(page.locator("#map-note")).to_contain_text("koordinatvy")
    expect(page.locator("#map")).to_be_hidden()

    form = page.locator("#search-form")
    form.get_by_label("Latitud").fill(str(INCIDENT[0]))
    form.get_by_label("Longitud").fill(str(INCIDENT[1]))
    form.get_by_label("Radie (m)").fill("200")
    form.get_by_label("Händelsen från").fill(local(start))
    form.get_by_label("Händelsen till").fill(local(end))
    form.get_by_role("button", name="Sök").click()
    result = page.locator(f"#results tr[data-camera-id='{camera.id}']")
    expect(result).to_contain_text("Brunnsparken, entré")
    expect(result).to_contain_text("33 m")
    expect(result).to_contain_text("ja (")
    expect(page.locator(f"#results tr[data-camera-id='{far.id}']")).to_have_count(0)
    # On the plot: the incident at the centre, the camera north of it, selected.
    dot = page.locator(f"#plot circle.cam[data-camera-id='{camera.id}']")
    expect(dot).to_have_class("cam has-footage selected")
    centre = page.locator("#plot circle.incident").bounding_box()
    cam_box = dot.bounding_box()
    assert centre is not None
    assert cam_box is not None
    assert cam_box["y"] < centre["y"]  # north is up
    assert abs(cam_box["x"] - centre["x"]) < 2
    expect(page.get_by_label("Begär material från Brunnsparken, entré")).to_be_checked()

    request = page.locator("#export-form")
    request.get_by_label("Diarienummer").fill("5000-K424242-25")
    request.get_by_label("Rättslig grund").select_option("preliminary_investigation")
    request.get_by_label("Bestämmelse").fill("RB 23 kap. 1 §")
    request.get_by_label("Handläggare").fill("Kim Karlsson")
    request.get_by_label("Enhet").fill("Utredning Väst")
    request.get_by_label("Skäl").fill("Misshandel vid entrén")
    with page.expect_navigation():
        request.get_by_role("button", name="Skicka begäran").click()
    export_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#export-status")).to_have_text("Väntar på beslut")
    expect(page.locator("#export-note")).to_contain_text("dataskyddsombud")

    # The owner's DPO approves (their side is the DPO journey); the page follows the status.
    approved = httpx.post(
        f"{server.url}/api/v1/exports/{export_id}/approve",
        json={"note": "OK"},
        headers=org.users[Role.dpo].headers,
    )
    assert approved.status_code == 200, approved.text
    expect(page.locator("#export-status")).to_have_text("Klar att ladda ner", timeout=60_000)
    sha = page.locator("#download-sha").inner_text().removeprefix("SHA-256: ")
    with page.expect_download() as download:
        page.get_by_role("link", name="Ladda ner paketet").click()
    package = tmp_path / "package.zip"
    download.value.save_as(package)
    expect(page.locator("#export-status")).to_have_text("Nedladdad", timeout=10_000)

    # Verification, offline, with the key as the page shows it.
    key_pem = page.locator("#public-key").inner_text()
    assert key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert len(page.locator("#key-fingerprint").inner_text()) == 64  # SHA-256 hex
    result_ok = verify_package(package, key_pem.encode())
    assert result_ok.ok, result_ok
    assert hashlib.sha256(package.read_bytes()).hexdigest() == sha
    with zipfile.ZipFile(package) as zf:
        assert "manifest.json" in zf.namelist()
        assert "5000-K424242-25" in zf.read("manifest.json").decode()
