"""The camera and site API: every refusal path with its exact message, the paused exception,
updates, decommissioning, filters, mask-plan versions and the audit trail."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from permits.models import LegalBasis
from registry.models import Camera, MaskPlanVersion
from tests.factories import Actor, Factory
from vms.core.config import Settings
from vms.core.models import AuditEntry, Organisation

MASK = {
    "zones": [{"type": "polygon", "action": "anonymise", "points": [[0, 0], [0.5, 0], [0.5, 0.5]]}]
}


def body(basis: LegalBasis | None, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Entré",
        "owner_contact": {"name": "Anna Fastighet", "email": "anna@brf.se", "phone": "+46 8 123"},
        "location": {"address": "Storgatan 1", "lat": 59.33, "lon": 18.07, "direction_deg": 90},
        "purpose": "Förebygga skadegörelse vid entrén",
        "purpose_category": "property_protection",
        "mode": "live_and_recording",
        "retention_hours": 48,
        "legal_basis_id": basis.id if basis else None,
        "source": {"kind": "rtsp", "url": "rtsp://127.0.0.1:8554/cam"},
        "signage": {"posted": True, "text": "Kamerabevakning, Brf Eken"},
        **extra,
    }


def errors(resp: Any) -> list[tuple[str | None, str]]:
    return [(e.get("field"), e["msg"]) for e in resp.json()["detail"]]


@pytest.fixture
def fm(factory: Factory) -> Actor:
    return factory.user("facility_manager")


@pytest.fixture
def org(fm: Actor) -> Organisation:
    return fm.user.organisation


def test_create_and_read(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation
) -> None:
    basis = factory.basis(org)
    site = factory.site(org)
    r = client.post(
        "/api/v1/cameras",
        headers=fm.headers,
        json=body(
            basis,
            site_id=site.id,
            schedule=[{"days": ["fri", "mon"], "start": "07:00", "end": "18:00"}],
        ),
    )
    assert r.status_code == 201, r.text
    cam = r.json()
    assert cam["organisation_id"] == org.id
    assert cam["permit_status"] == "ok"
    assert cam["conflicts"] == []
    assert cam["source"] == {
        "kind": "rtsp",
        "url": "rtsp://127.0.0.1:8554/cam",
        "host": None,
        "port": None,
        "profile_token": None,
        "path": None,
        "has_credentials": False,
    }
    assert cam["schedule"] == [{"days": ["mon", "fri"], "start": "07:00", "end": "18:00"}]
    assert cam["owner_contact"]["email"] == "anna@brf.se"
    assert cam["status"] == "active"
    got = client.get(f"/api/v1/cameras/{cam['id']}", headers=fm.headers).json()
    assert got == cam


@pytest.mark.parametrize(
    ("basis_kw", "extra", "expected"),
    [
        pytest.param(
            {},
            {"retention_hours": 100},
            [
                (
                    "retention_hours",
                    "retention_hours 100 exceeds the 72 hours allowed by legal basis {id}",
                )
            ],
            id="retention above the basis",
        ),
        pytest.param(
            {"recording_allowed": False},
            {"mode": "live_and_recording"},
            [
                (
                    "mode",
                    "mode live_and_recording records, but legal basis {id} does not allow "
                    "recording",
                )
            ],
            id="recording on a live-only basis",
        ),
        pytest.param(
            {"live_view_allowed": False},
            {"mode": "live"},
            [("mode", "mode live shows live view, but legal basis {id} does not allow it")],
            id="live view on a recording-only basis",
        ),
        pytest.param(
            {"recording_allowed": False, "max_retention_hours": 24},
            {"mode": "recording", "retention_hours": 48},
            [
                (
                    "retention_hours",
                    "retention_hours 48 exceeds the 24 hours allowed by legal basis {id}",
                ),
                ("mode", "mode recording records, but legal basis {id} does not allow recording"),
            ],
            id="several at once",
        ),
    ],
)
def test_exceeding_the_basis_is_refused_unless_paused(
    client: TestClient,
    factory: Factory,
    fm: Actor,
    org: Organisation,
    session: Session,
    basis_kw: dict[str, Any],
    extra: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    basis = factory.basis(org, **basis_kw)
    r = client.post("/api/v1/cameras", headers=fm.headers, json=body(basis, **extra))
    assert r.status_code == 422
    assert errors(r) == [(f, m.format(id=basis.id)) for f, m in expected]
    assert {e["code"] for e in r.json()["detail"]} == {"exceeds_basis"}
    assert session.scalar(select(Camera.id).where(Camera.organisation_id == org.id)) is None
    # Saved paused, it is kept (and flagged) but nothing runs.
    r = client.post(
        "/api/v1/cameras", headers=fm.headers, json=body(basis, status="paused", **extra)
    )
    assert r.status_code == 201, r.text
    cam = r.json()
    assert cam["permit_status"] == "conflict"
    assert [(c["field"], c["msg"]) for c in cam["conflicts"]] == [
        (f, m.format(id=basis.id)) for f, m in expected
    ]
    # Activating it is the same request as creating it active: refused the same way.
    r = client.patch(f"/api/v1/cameras/{cam['id']}", headers=fm.headers, json={"status": "active"})
    assert r.status_code == 422
    assert errors(r) == [(f, m.format(id=basis.id)) for f, m in expected]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            {"colour": "red"}, [("colour", "Extra inputs are not permitted")], id="unknown field"
        ),
        pytest.param(
            {"mode": "always"},
            [("mode", "Input should be 'live', 'recording' or 'live_and_recording'")],
            id="mode",
        ),
        pytest.param(
            {"purpose_category": "fun"},
            [
                (
                    "purpose_category",
                    "Input should be 'crime_prevention', 'property_protection', "
                    "'traffic_management', 'care_supervision', 'safety' or 'other'",
                )
            ],
            id="purpose category",
        ),
        pytest.param(
            {"retention_hours": -1},
            [("retention_hours", "Input should be greater than or equal to 0")],
            id="negative retention",
        ),
        pytest.param(
            {"status": "decommissioned"},
            [("status", "Input should be 'active' or 'paused'")],
            id="created decommissioned",
        ),
        pytest.param(
            {"location": {"lat": 59.3}},
            [("location", "lat and lon must be given together")],
            id="lat without lon",
        ),
        pytest.param(
            {"location": {"lat": 91, "lon": 18}},
            [("location.lat", "Input should be less than or equal to 90")],
            id="lat out of range",
        ),
        pytest.param(
            {"location": {"lat": 59, "lon": 18, "direction_deg": 360}},
            [("location.direction_deg", "Input should be less than 360")],
            id="direction",
        ),
        pytest.param(
            {"owner_contact": {"email": "not-an-email"}},
            [
                (
                    "owner_contact.email",
                    "value is not a valid email address: An email address must have an @-sign.",
                )
            ],
            id="email",
        ),
        pytest.param(
            {"owner_contact": {"phone": "call me"}},
            [
                (
                    "owner_contact.phone",
                    "must be a phone number: digits, spaces, ()- and an optional leading +",
                )
            ],
            id="phone",
        ),
        pytest.param(
            {"timezone": "Mars/Olympus"},
            [
                (
                    "timezone",
                    "unknown time zone: use an IANA name such as Europe/Stockholm",
                )
            ],
            id="timezone",
        ),
        pytest.param(
            {"schedule": [{"days": ["monday"], "start": "07:00", "end": "18:00"}]},
            [
                (
                    "schedule.0.days.0",
                    "Input should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun'",
                )
            ],
            id="schedule day",
        ),
        pytest.param(
            {"schedule": [{"days": ["mon", "mon"], "start": "07:00", "end": "18:00"}]},
            [("schedule.0.days", "days must not repeat")],
            id="schedule repeated day",
        ),
        pytest.param(
            {"schedule": [{"days": [], "start": "07:00", "end": "18:00"}]},
            [("schedule.0.days", "List should have at least 1 item after validation, not 0")],
            id="schedule no days",
        ),
        pytest.param(
            {"schedule": [{"days": ["mon"], "start": "7", "end": "24:00"}]},
            [
                ("schedule.0.start", "must be a time HH:MM between 00:00 and 23:59"),
                ("schedule.0.end", "must be a time HH:MM between 00:00 and 23:59"),
            ],
            id="schedule times",
        ),
        pytest.param(
            {"source": {"kind": "rtsp", "url": "http://127.0.0.1/cam"}},
            [("source.rtsp.url", "must be an rtsp:// or rtsps:// URL")],
            id="url scheme",
        ),
        pytest.param(
            {"source": {"kind": "rtsp", "url": "rtsp://u:p@127.0.0.1/cam", "password": "q"}},
            [
                (
                    "source.rtsp",
                    "give credentials either in the URL or as username/password, not both",
                )
            ],
            id="credentials twice",
        ),
        pytest.param(
            {"source": {"kind": "rtsp", "url": "rtsp://127.0.0.1:0/cam"}},
            [("source.rtsp.url", "port must be between 1 and 65535")],
            id="url port 0",
        ),
        pytest.param(
            {"source": {"kind": "rtsp", "url": "rtsp://[::1/cam"}},
            [("source.rtsp.url", "is not a valid URL (check the host and port)")],
            id="url unparsable",
        ),
        pytest.param(
            {"source": {"kind": "file", "path": "clip\x00.mp4"}},
            [(None, "text must not contain NUL characters (at source.path)")],
            id="NUL in a path",
        ),
        pytest.param(
            {"signage": {"posted": True, "text": "Kamera\x00"}},
            [(None, "text must not contain NUL characters (at signage.text)")],
            id="NUL in text (PostgreSQL cannot store it)",
        ),
        pytest.param(
            {"source": {"kind": "onvif", "host": "http://cam.local"}},
            [
                (
                    "source.onvif.host",
                    "must be a host name or IP address (no scheme, port, path or user)",
                )
            ],
            id="onvif host",
        ),
        pytest.param(
            {"source": {"kind": "onvif", "host": "cam.local", "port": 0}},
            [("source.onvif.port", "Input should be greater than or equal to 1")],
            id="onvif port",
        ),
        pytest.param(
            {"source": {"kind": "file", "path": "/etc/passwd"}},
            [("source.path", "must be inside the sample-media directory or the data directory")],
            id="file outside the roots",
        ),
        pytest.param(
            {"source": {"kind": "file", "path": "../../../etc/passwd"}},
            [("source.path", "must be inside the sample-media directory or the data directory")],
            id="file escaping with ..",
        ),
        pytest.param(
            {"source": {"kind": "file", "path": "no-such-clip.mp4"}},
            [("source.path", "file not found")],
            id="file missing",
        ),
        pytest.param(
            {"source": {"kind": "ftp"}},
            [
                (
                    "source",
                    "Input tag 'ftp' found using 'kind' does not match any of the expected tags: "
                    "'rtsp', 'onvif', 'file'",
                )
            ],
            id="source kind",
        ),
        pytest.param(
            {"mask_plan": {"method": "smudge"}},
            [("mask_plan.method", "Input should be 'blur', 'pixelate' or 'fill'")],
            id="mask plan",
        ),
        pytest.param(
            {"legal_basis_id": 999_999},
            [("legal_basis_id", "legal basis 999999 not found")],
            id="unknown basis",
        ),
        pytest.param(
            {"site_id": 999_999},
            [("site_id", "site 999999 not found")],
            id="unknown site",
        ),
    ],
)
def test_create_refusals(
    client: TestClient,
    factory: Factory,
    fm: Actor,
    org: Organisation,
    extra: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    r = client.post("/api/v1/cameras", headers=fm.headers, json=body(factory.basis(org), **extra))
    assert r.status_code == 422, r.text
    assert errors(r) == expected


def test_basis_and_site_of_another_organisation_are_not_found(
    client: TestClient, factory: Factory, fm: Actor
) -> None:
    other = factory.org()
    basis = factory.basis(other)
    site = factory.site(other)
    r = client.post("/api/v1/cameras", headers=fm.headers, json=body(basis, site_id=site.id))
    assert r.status_code == 422
    assert errors(r) == [
        ("site_id", f"site {site.id} not found"),
        ("legal_basis_id", f"legal basis {basis.id} not found"),
    ]


def test_organisation_rules(client: TestClient, factory: Factory, fm: Actor) -> None:
    other = factory.org()
    r = client.post(
        "/api/v1/cameras", headers=fm.headers, json=body(None, organisation_id=other.id)
    )
    assert r.status_code == 404
    assert errors(r) == [(None, "organisation not found")]
    admin = factory.user("admin")
    r = client.post(
        "/api/v1/cameras", headers=admin.headers, json=body(None, organisation_id=other.id)
    )
    assert r.status_code == 201
    assert r.json()["organisation_id"] == other.id
    assert r.json()["permit_status"] == "missing"
    r = client.post(
        "/api/v1/cameras", headers=admin.headers, json=body(None, organisation_id=999_999)
    )
    assert r.status_code == 404
    dpo = factory.user("dpo", fm.user.organisation)
    r = client.post("/api/v1/cameras", headers=dpo.headers, json=body(None))
    assert r.status_code == 403
    assert errors(r) == [(None, "this action needs one of the roles: admin, facility_manager")]
    police = factory.user("police")
    r = client.get("/api/v1/cameras", headers=police.headers)
    assert r.status_code == 403
    assert errors(r) == [
        (None, "this action needs one of the roles: admin, facility_manager, dpo, operator")
    ]


def test_file_source_under_the_data_dir(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation, settings: Settings
) -> None:
    clip = settings.data_dir / "media" / "demo.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"\x00")
    r = client.post(
        "/api/v1/cameras",
        headers=fm.headers,
        json=body(factory.basis(org), source={"kind": "file", "path": str(clip)}),
    )
    assert r.status_code == 201, r.text
    assert r.json()["source"]["path"] == str(clip.resolve())
    sample = sorted(p for p in settings.resolved_sample_media.rglob("*.mp4"))
    if sample:  # relative paths are read from the sample-media directory
        rel = sample[0].relative_to(settings.resolved_sample_media)
        r = client.post(
            "/api/v1/cameras",
            headers=fm.headers,
            json=body(factory.basis(org), source={"kind": "file", "path": str(rel)}),
        )
        assert r.status_code == 201, r.text


def test_update(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation, session: Session
) -> None:
    camera = factory.camera(org)
    url = f"/api/v1/cameras/{camera.id}"
    r = client.patch(url, headers=fm.headers, json={"name": None, "mode": None})
    assert r.status_code == 422
    assert errors(r) == [("mode", "must not be null"), ("name", "must not be null")]
    r = client.patch(url, headers=fm.headers, json={"retention_hours": 73})
    assert r.status_code == 422
    assert errors(r) == [
        (
            "retention_hours",
            "retention_hours 73 exceeds the 72 hours allowed by legal basis "
            f"{camera.legal_basis_id}",
        )
    ]
    # The paused exception: the same request saved as paused is kept.
    r = client.patch(url, headers=fm.headers, json={"retention_hours": 73, "status": "paused"})
    assert r.status_code == 200, r.text
    assert r.json()["permit_status"] == "conflict"
    r = client.patch(
        url,
        headers=fm.headers,
        json={"retention_hours": 24, "status": "active", "location": {"address": "Nygatan 2"}},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["permit_status"] == "ok"
    # Nested objects are replaced as a whole.
    assert out["location"] == {
        "address": "Nygatan 2",
        "lat": None,
        "lon": None,
        "mount_height_m": None,
        "direction_deg": None,
    }
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.target_type == "camera", AuditEntry.target_id == str(camera.id))
        .order_by(AuditEntry.seq)
    ).all()
    assert [(e.action, e.details) for e in rows] == [
        ("camera.update", {"fields": ["retention_hours"]}),
        ("camera.status", {"from": "active", "to": "paused"}),
        ("camera.update", {"fields": ["location", "retention_hours"]}),
        ("camera.status", {"from": "paused", "to": "active"}),
    ]
    for e in rows:
        assert e.actor_id == fm.user.id


def test_moving_to_another_basis(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation
) -> None:
    camera = factory.camera(org, retention_hours=48)
    live_only = factory.basis(org, recording_allowed=False)
    r = client.patch(
        f"/api/v1/cameras/{camera.id}", headers=fm.headers, json={"legal_basis_id": live_only.id}
    )
    assert r.status_code == 422
    assert errors(r) == [
        (
            "mode",
            f"mode live_and_recording records, but legal basis {live_only.id} does not allow "
            "recording",
        )
    ]
    r = client.patch(
        f"/api/v1/cameras/{camera.id}",
        headers=fm.headers,
        json={"legal_basis_id": live_only.id, "mode": "live"},
    )
    assert r.status_code == 200, r.text


def test_decommission(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation, session: Session
) -> None:
    camera = factory.camera(org)
    r = client.delete(f"/api/v1/cameras/{camera.id}", headers=fm.headers)
    assert r.status_code == 200
    assert r.json()["status"] == "decommissioned"
    assert r.json()["decommissioned_at"] is not None
    # Still in the register and readable.
    assert client.get(f"/api/v1/cameras/{camera.id}", headers=fm.headers).status_code == 200
    r = client.delete(f"/api/v1/cameras/{camera.id}", headers=fm.headers)
    assert r.status_code == 409
    assert errors(r) == [("status", f"camera {camera.id} is already decommissioned")]
    r = client.patch(f"/api/v1/cameras/{camera.id}", headers=fm.headers, json={"status": "active"})
    assert r.status_code == 409
    assert errors(r) == [
        (
            "status",
            f"camera {camera.id} is decommissioned: it stays in the register and can no longer "
            "be changed",
        )
    ]
    entry = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "camera.decommission", AuditEntry.target_id == str(camera.id)
        )
    ).one()
    assert entry.details == {"from": "active", "to": "decommissioned"}
    policy = client.get(f"/api/v1/cameras/{camera.id}/policy", headers=fm.headers).json()
    assert policy["may_view_live"] is False
    assert policy["reasons"] == ["camera is decommissioned"]


def test_mask_plan_versions(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation, session: Session
) -> None:
    from masking import plan_hash

    r = client.post(
        "/api/v1/cameras", headers=fm.headers, json=body(factory.basis(org), mask_plan=MASK)
    )
    assert r.status_code == 201, r.text
    cam = r.json()
    assert cam["mask_plan_hash"] == plan_hash(MASK)
    url = f"/api/v1/cameras/{cam['id']}"
    # The same plan again (key order, defaults spelled out) is no new version.
    r = client.patch(url, headers=fm.headers, json={"mask_plan": {**MASK, "method": "blur"}})
    assert r.status_code == 200
    second = {**MASK, "method": "fill"}
    r = client.patch(url, headers=fm.headers, json={"mask_plan": second})
    assert r.json()["mask_plan_hash"] == plan_hash(second)
    versions = session.scalars(
        select(MaskPlanVersion.plan_hash)
        .where(MaskPlanVersion.camera_id == cam["id"])
        .order_by(MaskPlanVersion.id)
    ).all()
    assert versions == [plan_hash(MASK), plan_hash(second)]
    actions = session.scalars(
        select(AuditEntry.action).where(
            AuditEntry.target_type == "camera", AuditEntry.target_id == str(cam["id"])
        )
    ).all()
    assert actions.count("camera.mask_plan") == 1
    r = client.patch(url, headers=fm.headers, json={"mask_plan": None})
    assert r.json()["mask_plan_hash"] == plan_hash(None)


def test_list_filters_and_search(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation
) -> None:
    site = factory.site(org)
    a = factory.camera(org, name="Cykelrum 100%", site=site)
    b = factory.camera(org, name="Garage", mode="live", purpose="Trafik i garaget")
    c = factory.camera(org, name="Soprum", basis=None)
    d = factory.camera(org, name="Gammal", status="decommissioned")
    factory.camera(factory.org(), name="Cykelrum elsewhere")

    def ids(**params: Any) -> list[int]:
        r = client.get("/api/v1/cameras", headers=fm.headers, params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["items"]]

    assert ids() == [a.id, b.id, c.id, d.id]
    assert ids(site_id=site.id) == [a.id]
    assert ids(mode="live") == [b.id]
    assert ids(status="decommissioned") == [d.id]
    assert ids(permit_status="missing") == [c.id]
    assert ids(permit_status="ok", limit=1, offset=1) == [b.id]
    assert ids(q="cykel") == [a.id]
    assert ids(q="TRAFIK") == [b.id]
    assert ids(q="100%") == [a.id]
    assert ids(q="%") == [a.id]  # a literal percent sign, not a wildcard
    r = client.get("/api/v1/cameras", headers=fm.headers, params={"permit_status": "ok"})
    assert r.json()["total"] == 3
    r = client.get("/api/v1/cameras", headers=fm.headers, params={"permit_status": "fine"})
    assert r.status_code == 422
    r = client.get("/api/v1/cameras", headers=fm.headers, params={"q": "a\x00"})
    assert r.status_code == 422
    assert errors(r) == [("q", "must not contain NUL characters")]


def test_sites(client: TestClient, factory: Factory, fm: Actor, org: Organisation) -> None:
    r = client.post("/api/v1/sites", headers=fm.headers, json={"name": "Hus A", "address": "Ekv 1"})
    assert r.status_code == 201
    site_id = r.json()["id"]
    r = client.post("/api/v1/sites", headers=fm.headers, json={"name": "Hus A"})
    assert r.status_code == 409
    assert errors(r) == [("name", "a site named 'Hus A' already exists")]
    client.post("/api/v1/sites", headers=fm.headers, json={"name": "Hus B"})
    r = client.patch(f"/api/v1/sites/{site_id}", headers=fm.headers, json={"name": "Hus B"})
    assert r.status_code == 409
    r = client.patch(f"/api/v1/sites/{site_id}", headers=fm.headers, json={"name": None})
    assert errors(r) == [("name", "must not be null")]
    r = client.patch(f"/api/v1/sites/{site_id}", headers=fm.headers, json={"address": "Ekv 3"})
    assert r.json()["address"] == "Ekv 3"
    listing = client.get("/api/v1/sites", headers=fm.headers).json()
    assert [s["name"] for s in listing["items"]] == ["Hus A", "Hus B"]


def test_policy_route(client: TestClient, factory: Factory, fm: Actor, org: Organisation) -> None:
    camera = factory.camera(org, basis=factory.basis(org, status="draft"))
    r = client.get(
        f"/api/v1/cameras/{camera.id}/policy",
        headers=fm.headers,
        params={"at": "2025-06-01T12:00:00+02:00"},
    )
    assert r.status_code == 200
    out = r.json()
    assert out["may_record"] is False
    assert out["reasons"] == [f"legal basis {camera.legal_basis_id} is a draft, not in force"]
    r = client.get(
        f"/api/v1/cameras/{camera.id}/policy", headers=fm.headers, params={"at": "2025-06-01T12:00"}
    )
    assert r.status_code == 422
