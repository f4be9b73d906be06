"""The data protection officer, in the browser: the compliance dashboard (missing bases,
conflicts, retention allowed vs. actual), the register and its CSV export, the retention report,
the audit log filtered and its hash chain verified, and a police export request approved (the
server then builds the package)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from sample_streams import RtspServerProcess
from tests.pipeline.conftest import FACADE_PLAN, LiveServer, committed, segments_of, wait_for
from tests.web.conftest import Org, sign_in
from vms.core.models import Role

FILLED_FACADE: dict[str, Any] = {**FACADE_PLAN, "method": "fill"}


def test_dpo_journey(
    server: LiveServer,
    org: Org,
    rtsp_server: RtspServerProcess,
    new_page: Callable[..., Page],
    web_engine: Engine,
) -> None:
    with committed(web_engine) as f:
        recorded = f.camera(
            org.org,
            name="Entré Gården",
            source={"kind": "rtsp", "url": rtsp_server.url("/real360")},
            mask_plan=FILLED_FACADE,
        )
        # What the dashboard is for: a camera without a basis, one asking more than its basis.
        f.camera(org.org, name="Soprum utan grund", basis=None, status="paused")
        short = f.basis(org.org, max_retention_hours=24)
        f.camera(org.org, name="Garage 72 h", basis=short, retention_hours=72, status="paused")
        police = f.user(Role.police, f.org("Polisregion Syd"))
    segs = wait_for(
        lambda: s if len(s := segments_of(web_engine, recorded.id)) >= 3 else None,
        40,
        "three recorded segments",
    )
    start = segs[0].start + dt.timedelta(seconds=0.2)
    end = segs[2].end - dt.timedelta(seconds=0.2)
    requested = httpx.post(
        f"{server.url}/api/v1/exports",
        json={
            "case_number": "5000-K111222-25",
            "legal_ground": {"category": "preliminary_investigation", "text": "RB 23 kap."},
            "officer": "Kim Karlsson",
            "unit": "Utredning Syd",
            "camera_ids": [recorded.id],
            "start": start.isoformat(),
            "end": end.isoformat(),
            "reason": "Skadegörelse vid entrén",
        },
        headers=police.headers,
    )
    assert requested.status_code == 201, requested.text
    export_id = requested.json()["id"]

    page = new_page()
    sign_in(page, server, org.users[Role.dpo])

    # -- compliance dashboard ----------------------------------------------------------------
    expect(page).to_have_url(f"{server.url}/compliance")
    missing = page.locator("#compliance-cards li[data-group='missing'] .count")
    conflict = page.locator("#compliance-cards li[data-group='conflict'] .count")
    expect(missing).to_have_text("1")
    expect(conflict).to_have_text("1")
    items = page.locator("#compliance-items tbody")
    expect(items.locator("tr[data-code='basis_missing']")).to_contain_text("Soprum utan grund")
    expect(items.locator("tr[data-code='retention_exceeds_basis']")).to_contain_text("Garage")
    retention = page.locator(f"#retention-table tr[data-camera-id='{recorded.id}']")
    expect(retention.locator("td").nth(1)).to_have_text("3 dygn")  # allowed: 72 h
    expect(retention.locator("td").nth(3)).to_contain_text("min")  # actual: minutes old
    expect(retention.locator("td").nth(4)).to_have_text("0")  # no violations

    # -- the register and its CSV ------------------------------------------------------------
    page.get_by_role("link", name="Förteckning").click()
    expect(page.locator("#register-table tbody")).to_contain_text("Entré Gården")
    with page.expect_download() as download:
        page.get_by_role("link", name="Exportera CSV").click()
    csv_text = download.value.path().read_text(encoding="utf-8-sig")
    header = csv_text.splitlines()[0].split(",")
    assert header[:2] == ["camera_id", "camera_name"]
    assert "Entré Gården" in csv_text
    assert "Garage 72 h" in csv_text

    # -- retention report --------------------------------------------------------------------
    page.get_by_role("link", name="Lagring").click()
    expect(page.locator("#report-table tbody")).to_contain_text("Entré Gården")
    expect(page.locator("#receipt-table tbody")).to_contain_text("Inga raderingar")

    # -- the audit log: filters, and the hash chain ------------------------------------------
    page.get_by_role("link", name="Granskningslogg").click()
    page.get_by_label("Händelse").fill("register.*")
    page.get_by_role("button", name="Filtrera").click()
    rows = page.locator("#audit-table tbody tr")
    expect(rows.first).to_contain_text("register.export")
    expect(rows.first).to_contain_text(org.users[Role.dpo].user.email)
    assert all("register." in r for r in rows.all_inner_texts())
    page.get_by_role("button", name="Verifiera kedjan").click()
    expect(page.locator("#verify-ok")).to_contain_text("Kedjan håller")

    # -- approve the police request ----------------------------------------------------------
    page.get_by_role("link", name="Utlämnanden").click()
    row = page.locator(f"#export-table tr[data-export-id='{export_id}']")
    expect(row).to_contain_text("Väntar på beslut")
    row.get_by_role("link", name="5000-K111222-25").click()
    expect(page.locator("#export-fields")).to_contain_text("Kim Karlsson, Utredning Syd")
    page.get_by_label("Anteckning eller skäl").fill("Godkänt enligt RB 23 kap.")
    page.get_by_role("button", name="Godkänn").click()
    expect(page.locator("#page-status")).to_contain_text("godkändes")
    # The page follows the build until the package is ready; the DPO gets no download.
    expect(page.locator("#export-status")).to_have_text("Klar att ladda ner", timeout=60_000)
    expect(page.locator("#download-box")).to_be_hidden()
    expect(page.locator("#export-fields")).to_contain_text("Godkänt enligt RB 23 kap.")
