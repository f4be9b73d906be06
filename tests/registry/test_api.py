"""The camera and site API: every refusal path with its exact message, the paused exception,
updates, decommissioning, filters, mask-plan versions and the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import Camera, MaskPlanVersion
from tests.factories import Actor, Factory
from tests.registry.helpers import MASK, body, errors
from vms.core.config import Settings
from vms.core.models import AuditEntry, Organisation


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
        "live_profile_token": None,
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


def test_file_sources_only_from_the_sample_and_import_roots(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation, settings: Settings
) -> None:
    """The data dir holds every organisation's recordings: a file source pointing there (or
    anywhere else outside the roots) is refused with the same answer whether the file exists or
    not."""
    recording = settings.data_dir / "recordings" / "1" / "2025" / "01" / "01" / "00" / "1.mp4"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"\x00")
    answers = []
    for path in (recording, recording.with_name("2.mp4"), Path("/etc/passwd"), Path("/nope")):
        r = client.post(
            "/api/v1/cameras",
            headers=fm.headers,
            json=body(factory.basis(org), source={"kind": "file", "path": str(path)}),
        )
        assert r.status_code == 422, r.text
        answers.append(errors(r))
    assert answers == [[("source.path", "must be inside the sample-media or import directory")]] * 4
    assert settings.sample_media_dir is not None
    sample = sorted(settings.sample_media_dir.rglob("*.mp4"))[0]
    for path in (sample, sample.relative_to(settings.sample_media_dir)):
        # Relative paths are read from the first root (the sample media).
        r = client.post(
            "/api/v1/cameras",
            headers=fm.headers,
            json=body(factory.basis(org), source={"kind": "file", "path": str(path)}),
        )
        assert r.status_code == 201, r.text
        assert r.json()["source"]["path"] == str(sample.resolve())


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
    assert [e.action for e in rows] == [
        "camera.update",
        "camera.status",
        "camera.update",
        "camera.status",
    ]
    # Old and new values of what decides retention (never of the source).
    assert rows[0].details == {
        "fields": ["retention_hours"],
        "values": {
            "retention_hours": {"from": 72, "to": 73},
            "status": {"from": "active", "to": "paused"},
        },
    }
    assert rows[1].details == {"from": "active", "to": "paused"}
    assert rows[2].details["fields"] == ["location", "retention_hours"]
    assert rows[2].details["values"] == {
        "retention_hours": {"from": 73, "to": 24},
        "status": {"from": "paused", "to": "active"},
    }
    assert rows[2].details["effective_retention_hours"] == {"from": 72, "to": 24}
    assert rows[2].details["older_footage"]["kept_hours"] == 72
    assert rows[3].details == {"from": "paused", "to": "active"}
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


KEEP_ALL: list[dict[str, Any] | None] = [
    None,
    {},
    {"version": 1, "default": "keep"},
    {"default": "keep", "zones": [], "method": "fill"},
]


@pytest.mark.parametrize("plan", KEEP_ALL, ids=["null", "empty", "keep", "keep-no-zones"])
def test_masks_cannot_be_switched_off_where_the_basis_requires_them(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation, plan: Any
) -> None:
    """A plan that anonymises nothing is a conflict with a basis that requires masking: refused
    on create and update, naming mask_plan. Where the basis does not require masking, it is the
    explicit "no masking" plan."""
    required = factory.basis(org)
    r = client.post("/api/v1/cameras", headers=fm.headers, json=body(required, mask_plan=plan))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["code"] == "masking_required"
    assert errors(r) == [
        (
            "mask_plan",
            f"the mask plan anonymises nothing, but legal basis {required.id} requires masking "
            "(draw the zones, or save no plan to anonymise every pixel until then)",
        )
    ]
    r = client.post("/api/v1/cameras", headers=fm.headers, json=body(required, mask_plan=MASK))
    assert r.status_code == 201, r.text
    url = f"/api/v1/cameras/{r.json()['id']}"
    r = client.patch(url, headers=fm.headers, json={"mask_plan": plan})
    assert r.status_code == 422, r.text
    assert errors(r)[0][0] == "mask_plan"
    # Not required: the explicit no-masking plan is allowed ...
    optional = factory.basis(org, masking_required=False)
    r = client.patch(
        url, headers=fm.headers, json={"legal_basis_id": optional.id, "mask_plan": plan}
    )
    assert r.status_code == 200, r.text
    assert r.json()["permit_status"] == "ok"
    # ... but moving that camera back onto a basis that requires masking is not.
    r = client.patch(url, headers=fm.headers, json={"legal_basis_id": required.id})
    assert r.status_code == 422, r.text
    assert errors(r)[0][0] == "mask_plan"


def test_a_stored_unmasked_plan_blocks_the_camera(
    client: TestClient, factory: Factory, fm: Actor, org: Organisation, session: Session
) -> None:
    """A keep-everything plan that reached the database anyway (the basis was changed to
    require masking later, or an old row) makes the camera's policy fail closed."""
    basis = factory.basis(org, masking_required=False)
    camera = factory.camera(org, basis=basis, mask_plan={"default": "keep"})
    r = client.get(f"/api/v1/cameras/{camera.id}/policy", headers=fm.headers)
    assert (r.json()["may_view_live"], r.json()["may_record"]) == (True, True)
    basis.masking_required = True
    session.flush()
    policy = client.get(f"/api/v1/cameras/{camera.id}/policy", headers=fm.headers).json()
    assert (policy["may_view_live"], policy["may_record"]) == (False, False)
    assert policy["reasons"][-1].startswith("the mask plan anonymises nothing")
    read = client.get(f"/api/v1/cameras/{camera.id}", headers=fm.headers).json()
    assert read["permit_status"] == "conflict"
    assert [c["field"] for c in read["conflicts"]] == ["mask_plan"]


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
