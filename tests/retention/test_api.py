"""The retention routes: holds, receipts and the DPO report (JSON, CSV, HTML)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from retention import service
from tests.factories import Factory
from vms.core.db import utcnow
from vms.core.models import AuditEntry, Role

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def _hold_body(camera_ids: list[int], **over: object) -> dict[str, object]:
    now = utcnow()
    body: dict[str, object] = {
        "camera_ids": camera_ids,
        "start": (now - 5 * H).isoformat(),
        "end": (now - H).isoformat(),
        "case_number": "K555-25",
        "reason": "Misshandel vid busshållplatsen",
        "expires_at": (now + 30 * 24 * H).isoformat(),
    }
    body.update(over)
    return body


def test_hold_life_cycle(client: TestClient, factory: Factory, session: Session) -> None:
    org = factory.org()
    camera = factory.camera(org)
    officer = factory.user(Role.police, password=None)
    resp = client.post("/api/v1/holds", json=_hold_body([camera.id]), headers=officer.headers)
    assert resp.status_code == 201, resp.text
    hold = resp.json()
    assert hold["camera_ids"] == [camera.id]
    assert hold["active"] is True
    assert hold["organisation_id"] == officer.organisation_id
    listed = client.get(
        "/api/v1/holds", params={"camera_id": camera.id, "active": True}, headers=officer.headers
    ).json()
    assert [h["id"] for h in listed["items"]] == [hold["id"]]
    assert listed["total"] == 1
    dpo = factory.user(Role.dpo, org, password=None)
    assert client.get(f"/api/v1/holds/{hold['id']}", headers=dpo.headers).status_code == 200
    resp = client.post(
        f"/api/v1/holds/{hold['id']}/release",
        json={"reason": "Förundersökningen nedlagd"},
        headers=dpo.headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["active"] is False
    assert resp.json()["released_by"] == dpo.user.id
    again = client.post(
        f"/api/v1/holds/{hold['id']}/release", json={"reason": "x"}, headers=dpo.headers
    )
    assert again.status_code == 409
    assert again.json()["detail"][0]["code"] == "hold_released"
    actions = set(
        session.scalars(select(AuditEntry.action).where(AuditEntry.target_id == str(hold["id"])))
    )
    assert {"retention.hold_created", "retention.hold_released"} <= actions


def test_hold_bad_input_is_422(client: TestClient, factory: Factory) -> None:
    camera = factory.camera()
    admin = factory.user(Role.admin, password=None)
    now = utcnow()
    bad = [
        _hold_body([camera.id], end=(now - 10 * H).isoformat()),
        _hold_body([camera.id], start="2025-01-01T00:00:00"),  # no zone
        _hold_body([camera.id], expires_at=(now - H).isoformat()),
        _hold_body([]),
        _hold_body([camera.id], unknown="field"),
        _hold_body([camera.id], case_number=""),
    ]
    for body in bad:
        resp = client.post("/api/v1/holds", json=body, headers=admin.headers)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["detail"][0]["code"]
    missing = client.post("/api/v1/holds", json=_hold_body([999_999]), headers=admin.headers)
    assert missing.status_code == 404


def test_receipts_route(
    client: TestClient, factory: Factory, session: Session, data_dir: Path
) -> None:
    org = factory.org()
    camera = factory.camera(org, retention_hours=1)
    seg = factory.segment(camera, start=utcnow() - 5 * H, data_dir=data_dir)
    service.sweep(session=session, data_dir=data_dir)
    dpo = factory.user(Role.dpo, org, password=None)
    resp = client.get(
        "/api/v1/retention/receipts",
        params={"camera_id": camera.id, "since": (utcnow() - H).isoformat()},
        headers=dpo.headers,
    )
    assert resp.status_code == 200, resp.text
    [item] = resp.json()["items"]
    assert item["segment_id"] == seg.id
    assert item["sha256"] == seg.sha256
    assert item["rule"].startswith("retention 1h")
    other = factory.user(Role.dpo, password=None)
    assert (
        client.get(
            "/api/v1/retention/receipts", params={"camera_id": camera.id}, headers=other.headers
        ).status_code
        == 404
    )
    assert client.get("/api/v1/retention/receipts", headers=other.headers).json()["total"] == 0


def test_report_json_csv_html(
    client: TestClient, factory: Factory, session: Session, data_dir: Path
) -> None:
    org = factory.org()
    basis = factory.basis(org, max_retention_hours=24)
    capped = factory.camera(org, basis=basis, retention_hours=72, name="Entré <script>")
    plain = factory.camera(
        org, basis=factory.basis(org, max_retention_hours=72), retention_hours=48
    )
    now = utcnow()
    # One segment for the sweep to delete, one held, one newer than its limit.
    factory.segment(capped, start=now - 50 * H, data_dir=data_dir)
    held = factory.segment(capped, start=now - 40 * H, data_dir=data_dir)
    fresh = factory.segment(capped, start=now - 2 * H, data_dir=data_dir)
    dpo = factory.user(Role.dpo, org, password=None)
    factory.hold([capped], by=dpo, start=held.start, end=held.end, case_number="K1-25", now=now)
    service.sweep(session=session, data_dir=data_dir, now=now)
    # A violation: footage older than allowed that no sweep has removed yet.
    late = factory.segment(plain, start=now - 60 * H, data_dir=data_dir)

    resp = client.get("/api/v1/reports/retention", headers=dpo.headers)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    by_id = {c["camera_id"]: c for c in report["cameras"]}
    c = by_id[capped.id]
    assert c["configured_retention_hours"] == 72
    assert c["allowed_retention_hours"] == 24
    assert c["allowed_source"] == f"legal basis {basis.id} (assessment, in_force) caps it at 24 h"
    assert c["oldest_footage"] == held.start.isoformat().replace("+00:00", "Z")
    assert c["segments"] == 2
    assert c["held_segments"] == 1
    assert [h["case_number"] for h in c["holds"]] == ["K1-25"]
    assert c["holds"][0]["segments"] == 1
    assert c["deletions_in_period"] == 1
    assert c["violations"] == 0
    assert c["last_sweep_at"] is not None
    p = by_id[plain.id]
    assert p["allowed_retention_hours"] == 48
    assert "camera setting (48 h)" in p["allowed_source"]
    assert p["violations"] == 1
    assert p["oldest_violation"] == late.start.isoformat().replace("+00:00", "Z")
    assert report["total_violations"] == 1
    assert fresh.id  # kept, counted in segments above

    resp = client.get("/api/v1/reports/retention", params={"format": "csv"}, headers=dpo.headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    row = next(r for r in rows if r["camera_id"] == str(capped.id))
    assert row["allowed_retention_hours"] == "24"
    assert row["violations"] == "0"
    assert "K1-25" in row["holds"]

    resp = client.get("/api/v1/reports/retention", params={"format": "html"}, headers=dpo.headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "Entré &lt;script&gt;" in resp.text
    assert "<script>" not in resp.text
    assert "1 segments are older than allowed" in resp.text

    bad = client.get("/api/v1/reports/retention", params={"format": "pdf"}, headers=dpo.headers)
    assert bad.status_code == 422
    viewed = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "retention.report_viewed")
    ).all()
    assert len(viewed) == 3


def test_report_is_scoped_to_the_dpo(client: TestClient, factory: Factory) -> None:
    mine, theirs = factory.org(), factory.org()
    my_cam, their_cam = factory.camera(mine), factory.camera(theirs)
    dpo = factory.user(Role.dpo, mine, password=None)
    ids = {
        c["camera_id"]
        for c in client.get("/api/v1/reports/retention", headers=dpo.headers).json()["cameras"]
    }
    assert my_cam.id in ids
    assert their_cam.id not in ids
    resp = client.get(
        "/api/v1/reports/retention",
        params={"organisation_id": theirs.id},
        headers=dpo.headers,
    )
    assert resp.status_code == 404
    resp = client.get(
        "/api/v1/reports/retention",
        params={"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"},
        headers=dpo.headers,
    )
    assert resp.status_code == 422


def test_csv_cells_cannot_become_formulas(client: TestClient, factory: Factory) -> None:
    org = factory.org()
    camera = factory.camera(org, name='=HYPERLINK("http://evil")')
    admin = factory.user(Role.admin, password=None)
    text = client.get(
        "/api/v1/reports/retention",
        params={"format": "csv", "camera_id": camera.id},
        headers=admin.headers,
    ).text
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["camera_name"].startswith("'=")
