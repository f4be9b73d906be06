"""Every main page, as each role sees it, with realistic data: rendered without a script error
or CSP violation, and photographed. `scripts/ui-screenshots` runs this with
`VMS_UI_SCREENSHOTS=docs/ui` to refresh the pictures the README links; otherwise they go to a
temporary folder and the test is a smoke test of all pages."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from sample_streams import RtspServerProcess
from tests.pipeline.conftest import FACADE_PLAN, LiveServer, committed, segments_of, wait_for
from tests.web.conftest import PASSWORD, Org, sign_in
from vms.core.models import Role

PIXELATED_FACADE: dict[str, Any] = {**FACADE_PLAN, "method": "pixelate"}
BAD_CSV = (
    "name,purpose,purpose_category,mode,retention_hours,source_kind,source_url\n"
    "Cykelrum,Skadegörelse,property_protection,live,0,rtsp,rtsp://10.0.0.7/a\n"
    "Soprum,Skadegörelse,property_protection,sometimes,0,rtsp,rtsp://10.0.0.8/b\n"
    "Entré,,property_protection,live,99999,ftp,ftp://x\n"
)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("VMS_UI_SCREENSHOTS")
    out = Path(target) if target else tmp_path / "ui"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_every_main_page(
    server: LiveServer,
    org: Org,
    rtsp_server: RtspServerProcess,
    new_page: Callable[..., Page],
    web_engine: Engine,
    shots: Path,
    tmp_path: Path,
) -> None:
    with committed(web_engine) as f:
        site = f.site(org.org, name="Västerskolan", address="Skolgatan 4, 413 06 Göteborg")
        basis = f.basis(org.org, title="Intresseavvägning Västerskolan", max_retention_hours=72)
        yard = f.camera(
            org.org,
            name="Skolgården, fasad",
            site=site,
            basis=basis,
            address="Skolgatan 4, Göteborg",
            lat=57.6995,
            lon=11.9462,
            source={"kind": "rtsp", "url": rtsp_server.url("/real360")},
            mask_plan=PIXELATED_FACADE,
        )
        f.camera(
            org.org,
            name="Entré norr",
            site=site,
            basis=f.basis(org.org, status="draft", title="Utkast: entréer"),
            lat=57.6997,
            lon=11.9466,
        )
        f.camera(
            org.org,
            name="Cykelrum",
            site=site,
            basis=f.basis(org.org, max_retention_hours=24, title="Intresseavvägning cykelrum"),
            retention_hours=72,
            status="paused",
        )
        f.camera(org.org, name="Soprum", basis=None, status="paused")
        police = f.user(Role.police, f.org("Polisområde Storgöteborg"), password=PASSWORD)
    segs = wait_for(
        lambda: s if len(s := segments_of(web_engine, yard.id)) >= 4 else None,
        40,
        "recorded segments",
    )
    api = httpx.Client(base_url=server.url, timeout=20)

    def request(case: str) -> int:
        resp = api.post(
            "/api/v1/exports",
            json={
                "case_number": case,
                "legal_ground": {"category": "preliminary_investigation", "text": "RB 23 kap."},
                "officer": "Kim Karlsson",
                "unit": "Utredning Väst",
                "camera_ids": [yard.id],
                "start": (segs[0].start + dt.timedelta(seconds=0.5)).isoformat(),
                "end": (segs[3].end - dt.timedelta(seconds=0.5)).isoformat(),
                "reason": "Skadegörelse på fasaden natten till lördag",
            },
            headers=police.headers,
        )
        assert resp.status_code == 201, resp.text
        export_id: int = resp.json()["id"]
        return export_id

    with api:
        ready = request("5000-K424242-25")
        dpo_headers = org.users[Role.dpo].headers
        api.post(f"/api/v1/exports/{ready}/approve", json={}, headers=dpo_headers)
        request("5000-K515151-25")

    def shot(page: Page, name: str, *, full: bool = False) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=full)

    # -- anonymous ---------------------------------------------------------------------------
    anon = new_page()
    anon.goto(f"{server.url}/login")
    shot(anon, "login")

    # -- facility manager --------------------------------------------------------------------
    fm = new_page()
    sign_in(fm, server, org.users[Role.facility_manager])
    expect(fm.locator(f"#camera-table tr[data-camera-id='{yard.id}']")).to_contain_text("Strömmar")
    shot(fm, "cameras")
    fm.goto(f"{server.url}/cameras/{yard.id}")
    expect(fm.get_by_label("Namn", exact=True)).to_have_value("Skolgården, fasad")
    shot(fm, "camera-edit")
    fm.goto(f"{server.url}/cameras/{yard.id}/mask")
    expect(fm.locator("#stage-message")).to_be_hidden(timeout=30_000)
    expect(fm.locator("#overlay polygon.strip")).to_have_count(1)
    fm.get_by_role("button", name="Förhandsgranska maskering").click()
    expect(fm.locator("#preview-box")).to_be_visible(timeout=30_000)
    shot(fm, "mask-editor", full=True)  # the picture, the plan and the masked preview
    fm.goto(f"{server.url}/cameras/import")
    csv = tmp_path / "register.csv"
    csv.write_text(BAD_CSV, encoding="utf-8")
    fm.locator("#i-file").set_input_files(str(csv))
    fm.get_by_role("button", name="Importera").click()
    expect(fm.locator("#import-report-title")).to_have_text("Ingenting importerades")
    shot(fm, "camera-import")
    fm.goto(f"{server.url}/legal-bases")
    expect(fm.locator("#basis-table tbody")).to_contain_text("Intresseavvägning Västerskolan")
    shot(fm, "legal-bases")

    # -- DPO ---------------------------------------------------------------------------------
    dpo = new_page()
    sign_in(dpo, server, org.users[Role.dpo])
    expect(dpo.locator("#compliance-items tbody")).to_contain_text("Soprum")
    expect(dpo.locator("#retention-table tbody")).to_contain_text("Skolgården")
    shot(dpo, "compliance")
    dpo.goto(f"{server.url}/register")
    expect(dpo.locator("#register-table tbody")).to_contain_text("Skolgården")
    shot(dpo, "register")
    dpo.goto(f"{server.url}/retention")
    expect(dpo.locator("#report-table tbody")).to_contain_text("Skolgården")
    shot(dpo, "retention")
    dpo.goto(f"{server.url}/audit")
    dpo.get_by_role("button", name="Verifiera kedjan").click()
    expect(dpo.locator("#verify-ok")).to_be_visible()
    shot(dpo, "audit")
    dpo.goto(f"{server.url}/exports")
    expect(dpo.locator("#export-table tbody")).to_contain_text("5000-K515151-25")
    shot(dpo, "exports")

    # -- operator ----------------------------------------------------------------------------
    op = new_page()
    sign_in(op, server, org.users[Role.operator])
    op.wait_for_function(
        "() => [...document.querySelectorAll('.tile img')].every(i => i.naturalWidth > 0)"
    )
    expect(op.locator(".live-grid")).to_contain_text("Ingen livebild")
    shot(op, "live")
    op.goto(f"{server.url}/live/{yard.id}")
    op.wait_for_function("() => document.querySelector('#live-img').naturalWidth > 0")
    expect(op.locator("#status-list")).to_contain_text("Strömmar")
    shot(op, "live-camera")
    op.goto(f"{server.url}/recordings?camera={yard.id}")
    op.locator("#timeline rect.seg").nth(1).click()
    op.wait_for_function("() => document.querySelector('#player').currentTime > 0.2")
    op.evaluate("() => document.querySelector('#player').pause()")
    shot(op, "recordings")

    # -- police ------------------------------------------------------------------------------
    pol = new_page()
    sign_in(pol, server, police)
    expect(pol.locator("#plot")).to_be_visible(timeout=10_000)
    pol.get_by_label("Latitud").fill("57.6996")
    pol.get_by_label("Longitud").fill("11.9464")
    pol.get_by_role("button", name="Sök").click()
    expect(pol.locator("#results tbody")).to_contain_text("Skolgården")
    shot(pol, "search")
    pol.goto(f"{server.url}/exports/{ready}")
    expect(pol.locator("#export-status")).to_have_text("Klar att ladda ner", timeout=60_000)
    expect(pol.locator("#key-fingerprint")).not_to_have_text("")
    shot(pol, "export-detail")
    pol.goto(f"{server.url}/cameras/new")
    expect(pol.locator("h1")).to_have_text("Inte för din roll")
    shot(pol, "forbidden")

    # -- the same in English -----------------------------------------------------------------
    en = new_page(locale="en-GB")
    en.set_extra_http_headers({"Accept-Language": "en-GB,en;q=0.9"})
    sign_in(en, server, org.users[Role.dpo])
    expect(en.locator("h1")).to_have_text("Compliance")
    expect(en.locator("#compliance-items tbody")).to_contain_text("Soprum")
    shot(en, "compliance-en")

    names = sorted(p.stem for p in shots.glob("*.png"))
    assert len(names) == 18, names
