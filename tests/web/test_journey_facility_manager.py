"""The facility manager, in the browser, against the whole server: document a legal basis (draft,
PDF, in force), import a register (the per-row report), register a camera from an ONVIF probe
(field errors from the API next to the field), edit it, draw the facade strip on the camera's
picture in the mask editor, preview, save, and the live snapshot is masked to that strip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import httpx
import numpy as np
from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from masking import compile_plan, parse_plan
from registry.models import Camera
from tests.peers.onvif_device import ONVIF_PASSWORD, ONVIF_USER, OnvifDevice
from tests.pipeline.conftest import LiveServer, state_is, wait_for
from tests.web.conftest import Org, sign_in
from vms.core.models import Role

# The school yard on the 640x360 sample footage: four measured ground points (metres) and where
# they are in the picture; the facade runs along ground y = 0 between the first two.
CALIBRATION = [
    ((0.1, 0.95), (0.0, 0.0)),
    ((0.9, 0.95), (10.0, 0.0)),
    ((0.75, 0.55), (10.0, 10.0)),
    ((0.25, 0.55), (0.0, 10.0)),
]
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
BAD_CSV = (
    "name,purpose,purpose_category,mode,retention_hours,source_kind,source_url,status\n"
    "Cykelrum,Skadegörelse,property_protection,live,0,rtsp,rtsp://127.0.0.1:9/a,paused\n"
    "Soprum,Skadegörelse,property_protection,sometimes,0,rtsp,rtsp://127.0.0.1:9/b,paused\n"
)
GOOD_CSV = BAD_CSV.replace("sometimes", "live")


def click_at(page: Page, selector: str, x: float, y: float) -> None:
    """Click a point given as a fraction of the element's size."""
    box = page.locator(selector).bounding_box()
    assert box is not None
    page.locator(selector).click(position={"x": x * box["width"], "y": y * box["height"]})


def test_facility_manager_journey(
    server: LiveServer,
    org: Org,
    onvif_device: OnvifDevice,
    new_page: Callable[..., Page],
    web_engine: Engine,
    tmp_path: Path,
) -> None:
    manager = org.users[Role.facility_manager]
    page = new_page()
    sign_in(page, server, manager)
    expect(page).to_have_url(f"{server.url}/cameras")
    expect(page.locator("#camera-table tbody")).to_contain_text("Inga kameror")

    # -- the legal basis: a draft, an API error next to its field, a PDF, the DPO's decision ----
    page.get_by_role("link", name="Rättslig grund").click()
    form = page.locator("#basis-form")
    form.get_by_label("Rubrik").fill("")
    form.get_by_role("button", name="Spara utkast").click()
    expect(form.locator("#b-title")).to_have_attribute("aria-invalid", "true")
    expect(form.locator(".field-error").first).to_be_visible()
    form.get_by_label("Rubrik").fill("Intresseavvägning skolgården")
    form.get_by_label("Ändamål").fill("Förebygga skadegörelse på skolans fasad")
    form.get_by_label("Livebild tillåten").check()
    form.get_by_label("Varför mindre ingripande åtgärder inte räcker").fill(
        "Belysning och väktare har prövats utan effekt"
    )
    form.get_by_label("Bevakat område").fill("Skolgården längs fasaden")
    form.get_by_label("Beslutat av").fill("Skolnämnden")
    form.get_by_label("Beslutad den").fill("2025-05-02T10:00")
    form.get_by_role("button", name="Spara utkast").click()
    row = page.locator("#basis-table tbody tr", has_text="Intresseavvägning skolgården")
    expect(row).to_contain_text("Utkast")
    row.get_by_role("button", name="Bifoga PDF").click()
    pdf = tmp_path / "beslut.pdf"
    pdf.write_bytes(PDF)
    page.locator("#u-file").set_input_files(str(pdf))
    page.locator("#upload-form").get_by_role("button", name="Bifoga PDF").click()
    expect(row.get_by_role("link", name="beslut.pdf")).to_be_visible()
    # Separation of duties: the facility manager drafts, the DPO puts the basis in force.
    expect(row).to_contain_text("Väntar på att dataskyddsombudet beslutar")
    expect(row.get_by_role("button", name="Börja gälla")).to_have_count(0)
    dpo_page = new_page()
    sign_in(dpo_page, server, org.users[Role.dpo])
    dpo_page.goto(f"{server.url}/legal-bases")
    dpo_row = dpo_page.locator("#basis-table tbody tr", has_text="Intresseavvägning skolgården")
    dpo_row.get_by_role("button", name="Börja gälla").click()
    expect(dpo_row).to_contain_text("Gäller")
    page.reload()
    expect(row).to_contain_text("Gäller")

    # -- import: a bad row is reported by row and column, nothing imported; then it imports ----
    page.get_by_role("link", name="Import").click()
    bad = tmp_path / "register.csv"
    bad.write_text(BAD_CSV, encoding="utf-8")
    page.locator("#i-file").set_input_files(str(bad))
    page.get_by_label("Kontrollera bara (provkörning)").uncheck()
    page.get_by_role("button", name="Importera").click()
    expect(page.locator("#import-report-title")).to_have_text("Ingenting importerades")
    report_row = page.locator("#import-rows tbody tr").first
    expect(report_row.locator("td").nth(0)).to_have_text("3")
    expect(report_row.locator("td").nth(1)).to_have_text("mode")
    bad.write_text(GOOD_CSV, encoding="utf-8")
    page.locator("#i-file").set_input_files(str(bad))
    page.get_by_role("button", name="Importera").click()
    expect(page.locator("#import-summary")).to_contain_text("2 kameror skapade")

    # -- register a camera: ONVIF probe, pick the sub stream, errors next to their fields ------
    page.goto(f"{server.url}/cameras/new")
    form = page.locator("#camera-form")
    form.get_by_label("Namn", exact=True).fill("Skolgården, fasad")
    form.get_by_label("Ändamål", exact=True).fill("Förebygga skadegörelse på fasaden")
    form.get_by_label("Läge").select_option("live_and_recording")
    form.get_by_label("Lagring (timmar)").fill("48")
    form.get_by_label("Rättslig grund").select_option(label="Intresseavvägning skolgården (Gäller)")
    form.get_by_label("Typ av källa").select_option("onvif")
    form.get_by_label("ONVIF-värd").fill(onvif_device.host)
    form.get_by_label("ONVIF-port").fill(str(onvif_device.port))
    form.get_by_label("Användarnamn").fill(ONVIF_USER)
    form.get_by_label("Lösenord", exact=True).fill("Wr0ng-pass")
    form.get_by_role("button", name="Fråga ONVIF-enheten").click()
    # A wrong password is named on the password field, as the API names it.
    expect(form.locator("#c-pass")).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Lösenord", exact=True).fill(ONVIF_PASSWORD)
    form.get_by_role("button", name="Fråga ONVIF-enheten").click()
    expect(form.locator("#probe-result")).to_contain_text("PeerCam 2")
    # The probe fills in the best profile to record and the substream for live view ...
    expect(form.get_by_label("ONVIF-profil (token)")).to_have_value("main")
    expect(form.get_by_label("Profil för livebild (delström)")).to_have_value("sub")
    expect(form.locator("#probe-result")).to_contain_text("föreslås för livebild")
    # ... and recording the substream itself leaves live view on it, no second stream.
    form.get_by_label("SubStream", exact=False).check()
    expect(form.get_by_label("ONVIF-profil (token)")).to_have_value("sub")
    expect(form.get_by_label("Profil för livebild (delström)")).to_have_value("")
    form.get_by_role("button", name="Spara").click()
    # The basis allows live view only: the API refuses recording and says so at the mode field.
    mode_error = form.locator("#c-mode").locator("xpath=..").locator(".field-error")
    expect(mode_error).to_contain_text("recording")
    form.get_by_label("Läge").select_option("live")
    form.get_by_label("Lagring (timmar)").fill("0")
    form.get_by_label("Lösenord", exact=True).fill(ONVIF_PASSWORD)
    with page.expect_navigation():
        form.get_by_role("button", name="Spara").click()
    expect(page.locator("#page-status")).to_contain_text("Kameran registrerades")
    camera_id = int(page.url.split("/cameras/")[1].split("?")[0])

    # -- edit: the credentials stay (blank password), the change is saved ---------------------
    form = page.locator("#camera-form")
    expect(form.get_by_label("Namn", exact=True)).to_have_value("Skolgården, fasad")
    form.get_by_label("Namn", exact=True).fill("Skolgården, fasad mot gården")
    form.get_by_role("button", name="Spara").click()
    expect(page.locator("#page-status")).to_contain_text("Kameran sparades")
    expect(page.locator("#camera-title")).to_have_text("Skolgården, fasad mot gården")
    with Session(web_engine) as session:
        camera = session.get(Camera, camera_id)
        assert camera is not None
        assert camera.name == "Skolgården, fasad mot gården"
        assert camera.source_profile_token == "sub"
        assert camera.source_live_profile_token is None
        assert camera.source_secret is not None  # kept through the edit
    wait_for(state_is(server.pipeline, camera_id, "streaming"), 30, "the camera streaming")

    # -- the mask editor: facade strip on the camera's picture, preview, save ------------------
    page.get_by_role("link", name="Maskeringsplan").click()
    expect(page.locator("#stage-message")).to_be_hidden(timeout=30_000)
    expect(page.locator("#backdrop-note")).to_contain_text("omaskerade")
    page.get_by_label("Kalibreringspunkt").check()
    for i, ((x, y), (gx, gy)) in enumerate(CALIBRATION):
        click_at(page, "#overlay", x, y)
        page.get_by_label(f"Mark-x för punkt {i} i meter").fill(str(gx))
        page.get_by_label(f"Mark-y för punkt {i} i meter").fill(str(gy))
        page.get_by_label(f"Mark-y för punkt {i} i meter").press("Tab")
    page.get_by_label("Fasadlinje").check()
    expect(page.locator("#tool-hint")).to_contain_text("fasadens fot")
    click_at(page, "#overlay", *CALIBRATION[0][0])
    click_at(page, "#overlay", *CALIBRATION[1][0])
    page.get_by_label("Bredd (m)").fill("2")
    page.get_by_label("Bredd (m)").press("Tab")
    page.get_by_label("Utanför zonerna").select_option("anonymise")
    page.get_by_label("Metod").select_option("fill")
    expect(page.locator("#overlay polygon.strip")).to_have_count(1)
    page.get_by_role("button", name="Förhandsgranska maskering").click()
    expect(page.locator("#preview-box")).to_be_visible(timeout=30_000)
    expect(page.locator("#page-status")).to_contain_text("osparade planen")
    page.get_by_role("button", name="Spara plan").click()
    expect(page.locator("#page-status")).to_contain_text("Maskeringsplanen sparades")

    with Session(web_engine) as session:
        camera = session.get(Camera, camera_id)
        assert camera is not None
        plan = camera.mask_plan
    assert plan is not None
    assert plan["default"] == "anonymise"
    assert plan["method"] == "fill"
    (strip,) = plan["zones"]
    assert strip["type"] == "facade_strip"
    assert strip["width_m"] == 2
    # The facade was clicked on the picture: through the calibration it lands on the measured
    # wall line (within a pixel's worth of metres).
    np.testing.assert_allclose(strip["facade"], [[0.0, 0.0], [10.0, 0.0]], atol=0.1)

    # -- the live snapshot is masked to the strip -------------------------------------------
    anon = compile_plan(parse_plan(plan), 640, 360).anon_mask > 0
    inner_anon = cv2.erode(anon.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    inner_kept = cv2.erode((~anon).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    assert inner_kept.sum() > 5000  # the strip is a real part of the picture

    def masked_snapshot() -> bool:
        resp = httpx.get(
            f"{server.url}/api/v1/cameras/{camera_id}/snapshot.jpg",
            headers=manager.headers,
            timeout=20,
        )
        assert resp.status_code == 200, resp.text
        image = cv2.imdecode(np.frombuffer(resp.content, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert image is not None
        return bool(image[inner_anon].max() <= 40 and image[inner_kept].mean() > 40)

    wait_for(masked_snapshot, 20, "the live snapshot masked to the facade strip", interval=0.5)

    # Police never get the editor, not even by typing its address.
    police = new_page()
    sign_in(police, server, org.users[Role.police])
    police.goto(f"{server.url}/cameras/{camera_id}/mask")
    expect(police.locator("h1")).to_have_text("Inte för din roll")
