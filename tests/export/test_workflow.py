"""The police export workflow through the API: request and hold, refusals, approval, build,
download, verification, close, expiry, and the audit trail of all of it."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import Actor, Factory
from tests.media import read_stamp
from vms.core import audit
from vms.core.config import Settings
from vms.core.db import utcnow
from vms.core.errors import Conflict
from vms.core.models import Organisation, Role
from vms.core.times import iso_seconds
from vms.export import build
from vms.export.verify import verify_package

PLAN = {"version": 1, "method": "pixelate", "default": "keep", "zones": []}
H = dt.timedelta(hours=1)
S = dt.timedelta(seconds=1)


@pytest.fixture
def sessions(session: Session) -> Callable[[], Session]:
    """Sessions for the build that join the test's transaction (rolled back at the end)."""
    conn = session.connection()
    return lambda: Session(
        bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


class World:
    def __init__(self, factory: Factory, settings: Settings) -> None:
        self.factory = factory
        self.settings = settings
        self.owner: Organisation = factory.org("Bostadsbolaget AB")
        self.police_org: Organisation = factory.org("Polismyndigheten")
        self.police: Actor = factory.user(Role.police, self.police_org, password=None)
        self.dpo: Actor = factory.user(Role.dpo, self.owner, password=None)

    def camera(self, **kw: Any) -> Any:
        kw.setdefault("mask_plan", PLAN)
        return self.factory.camera(self.owner, **kw)

    def body(self, camera_ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        return {
            "case_number": "5000-K123456-25",
            "legal_ground": {"category": "preliminary_investigation", "text": "RB 27 kap. 1 §"},
            "officer": "Anna Andersson",
            "unit": "LPO Göteborg City",
            "camera_ids": camera_ids,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "reason": "Inbrott i cykelrummet natten mot fredag",
        }


@pytest.fixture
def world(factory: Factory, settings: Settings) -> World:
    return World(factory, settings)


def _problems(resp: Any) -> list[tuple[str, str]]:
    assert resp.status_code == 422, resp.text
    return [(d["code"], d["msg"]) for d in resp.json()["detail"]]


def test_request_approve_build_download_verify_close(
    client: TestClient,
    world: World,
    session: Session,
    sessions: Callable[[], Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    camera = world.camera(name="Entré Storgatan 1")
    t0 = (utcnow() - 10 * dt.timedelta(minutes=1)).replace(microsecond=0)
    segs = world.factory.recording(camera, settings.data_dir, start=t0, segments=3, seconds=3)
    start, end = t0 + dt.timedelta(seconds=1.25), t0 + dt.timedelta(seconds=7.5)

    resp = client.post(
        "/api/v1/exports", json=world.body([camera.id], start, end), headers=world.police.headers
    )
    assert resp.status_code == 201, resp.text
    req = resp.json()
    assert (req["status"], req["organisation_id"]) == ("requested", world.owner.id)
    hold = client.get(f"/api/v1/holds/{req['hold_id']}", headers=world.police.headers).json()
    assert hold["released_at"] is None
    assert hold["camera_ids"] == [camera.id]

    # The owner's DPO sees it and approves; the requester follows the status.
    listed = client.get("/api/v1/exports", headers=world.dpo.headers).json()
    assert [r["id"] for r in listed["items"]] == [req["id"]]
    resp = client.post(
        f"/api/v1/exports/{req['id']}/approve", json={"note": "OK"}, headers=world.dpo.headers
    )
    assert resp.json()["status"] == "approved"

    built = build.build_package(session_factory=sessions, settings=settings, export_id=req["id"])
    assert (built.status.value, built.progress) == ("ready", 100)
    view = client.get(f"/api/v1/exports/{req['id']}", headers=world.police.headers).json()
    assert view["status"] == "ready"
    assert view["expires_at"] is not None

    colleague = world.factory.user(Role.police, world.police_org, password=None)
    assert (
        client.get(f"/api/v1/exports/{req['id']}/download", headers=colleague.headers).status_code
        == 403
    )
    resp = client.get(f"/api/v1/exports/{req['id']}/download", headers=world.police.headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/zip"
    pkg = tmp_path / "package.zip"
    pkg.write_bytes(resp.content)
    assert resp.headers["x-package-sha256"] == view["package_sha256"]

    key = client.get("/api/v1/exports/public-key")
    assert key.status_code == 200
    result = verify_package(pkg, key.content)
    assert result.ok, result.problem
    m = result.manifest
    assert m is not None
    assert m["case_number"] == "5000-K123456-25"
    assert m["requested_by"]["officer"] == "Anna Andersson"
    assert m["requested_by"]["organisation"] == "Polismyndigheten"
    assert m["approved_by"]["email"] == world.dpo.user.email
    assert m["approved_by"]["role"] == "dpo"
    (cam,) = m["cameras"]
    assert cam["registry"]["name"] == "Entré Storgatan 1"
    assert cam["registry"]["organisation"] == "Bostadsbolaget AB"
    assert "source" not in cam["registry"]
    assert cam["legal_basis"]["id"] == camera.legal_basis_id
    assert cam["mask_plans"] == [{"hash": camera.mask_plan_hash, "plan": camera.mask_plan}]
    assert [s["sha256"] for s in cam["segments"]] == [s.sha256 for s in segs]
    assert cam["gaps"] == []
    with zipfile.ZipFile(pkg) as zf:
        video = zf.read(f"camera-{camera.id}/video.mp4")
    with av.open(io.BytesIO(video), "r") as c:
        stamps = [read_stamp(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert stamps == list(range(13, 75))

    after = client.get(f"/api/v1/exports/{req['id']}", headers=world.police.headers).json()
    assert (after["status"], after["download_count"]) == ("downloaded", 1)

    resp = client.post(
        f"/api/v1/exports/{req['id']}/close",
        json={"reason": "Ärendet avslutat"},
        headers=world.police.headers,
    )
    assert resp.json()["status"] == "closed"
    assert list((settings.data_dir / "exports").glob("*.zip")) == []
    hold = client.get(f"/api/v1/holds/{req['hold_id']}", headers=world.police.headers).json()
    assert hold["released_at"] is not None

    actions = _actions(session, world.owner.id)
    for action in (
        "export.requested",
        "retention.hold_created",
        "export.approved",
        "export.build_started",
        "export.built",
        "export.downloaded",
        "export.closed",
        "retention.hold_released",
    ):
        assert action in actions, f"{action} missing from the owner's audit log: {actions}"
    assert audit.verify_chain(session).ok


def _actions(session: Session, org_id: int) -> list[str]:
    entries, _ = audit.list_entries(session, organisation_ids={org_id}, limit=500, offset=0)
    return [e.action for e in reversed(entries)]


# --- refusals ---------------------------------------------------------------------------------


def test_refused_when_the_range_has_no_footage(client: TestClient, world: World) -> None:
    camera = world.camera(name="Cykelrum")
    now = utcnow()
    body = world.body([camera.id], now - 2 * H, now - H)
    resp = client.post("/api/v1/exports", json=body, headers=world.police.headers)
    assert _problems(resp) == [
        (
            "no_footage",
            f"camera {camera.id} (Cykelrum) has no recorded footage between "
            f"{iso_seconds(now - 2 * H)} and {iso_seconds(now - H)}",
        )
    ]
    assert resp.json()["detail"][0]["field"] == "camera_ids"


def test_refused_past_retention_even_before_the_sweep(
    client: TestClient, world: World, factory: Factory
) -> None:
    camera = world.camera(name="Garage", retention_hours=24)
    now = utcnow()
    # Footage from 30 h ago is still indexed (the sweep has not run): it must not leave.
    factory.segment(camera, start=now - 30 * H, end=now - 30 * H + 10 * 60 * S)
    body = world.body([camera.id], now - 30 * H, now - 29 * H)
    resp = client.post("/api/v1/exports", json=body, headers=world.police.headers)
    ((code, msg),) = _problems(resp)
    assert code == "past_retention"
    assert msg.startswith(f"camera {camera.id} (Garage) may keep footage for 24 hours")
    cutoff = dt.datetime.fromisoformat(msg.split("retention cut-off ")[1].split(";")[0])
    assert abs(cutoff - (now - 24 * H)) < 5 * S
    assert cutoff.tzinfo is not None
    assert msg.split("retention cut-off ")[1].split(";")[0].endswith("Z")


def test_retention_is_the_stricter_of_camera_and_basis(
    client: TestClient, world: World, factory: Factory
) -> None:
    basis = factory.basis(world.owner, max_retention_hours=48)
    camera = world.camera(name="Port", retention_hours=48, basis=basis)
    basis.max_retention_hours = 12  # the basis was tightened after the camera was set up
    now = utcnow()
    factory.segment(camera, start=now - 20 * H, end=now - 20 * H + 10 * 60 * S)
    body = world.body([camera.id], now - 20 * H, now - 19 * H)
    ((code, msg),) = _problems(
        client.post("/api/v1/exports", json=body, headers=world.police.headers)
    )
    assert code == "past_retention"
    assert "may keep footage for 12 hours" in msg


def test_refused_for_a_live_only_camera(client: TestClient, world: World) -> None:
    camera = world.camera(name="Reception", mode="live")
    now = utcnow()
    resp = client.post(
        "/api/v1/exports", json=world.body([camera.id], now - H, now), headers=world.police.headers
    )
    assert _problems(resp) == [
        (
            "live_only",
            f"camera {camera.id} (Reception) is live-only: it records nothing that could be "
            "exported",
        )
    ]


def test_refused_when_the_owner_no_longer_holds_footage(
    client: TestClient, world: World, factory: Factory
) -> None:
    gone = utcnow() - 100 * H
    camera = world.camera(name="Gamla entrén", status="decommissioned", decommissioned_at=gone)
    now = utcnow()
    resp = client.post(
        "/api/v1/exports", json=world.body([camera.id], now - H, now), headers=world.police.headers
    )
    ((code, msg),) = _problems(resp)
    assert code == "no_access"
    assert msg.startswith(
        f"camera {camera.id} (Gamla entrén) was withdrawn from the register at {iso_seconds(gone)}"
    )
    assert "its owner holds no footage that may be handed over" in msg


def test_every_problem_is_listed(client: TestClient, world: World, factory: Factory) -> None:
    live = world.camera(name="A", mode="live")
    empty = world.camera(name="B")
    ok = world.camera(name="C")
    now = utcnow()
    factory.segment(ok, start=now - H, end=now - H + 600 * S)
    resp = client.post(
        "/api/v1/exports",
        json=world.body([live.id, empty.id, ok.id], now - H, now),
        headers=world.police.headers,
    )
    assert [c for c, _ in _problems(resp)] == ["live_only", "no_footage"]
    assert resp.json()["detail"][0]["msg"].startswith(f"camera {live.id} (A)")


def test_request_shape_refusals(client: TestClient, world: World, factory: Factory) -> None:
    camera = world.camera()
    other = factory.camera(factory.org())
    now = utcnow()

    def post(body: dict[str, Any]) -> Any:
        return client.post("/api/v1/exports", json=body, headers=world.police.headers)

    assert _problems(post(world.body([camera.id], now, now - H)))[0][0] == "invalid_range"
    ((code, msg),) = _problems(post(world.body([camera.id], now, now + 2 * H)))
    assert code == "invalid_range"
    assert msg.startswith("the range must not end in the future (now is ")
    assert _problems(post(world.body([camera.id, other.id], now - H, now)))[0][0] == (
        "multiple_organisations"
    )
    assert post(world.body([999_999], now - H, now)).status_code == 404
    bad = world.body([camera.id], now - H, now) | {"legal_ground": {"category": "x", "text": "y"}}
    assert _problems(post(bad))[0][0] == "enum"
    naive = world.body([camera.id], now - H, now) | {"start": "2025-01-01T10:00:00"}
    assert _problems(post(naive))[0][0] == "timezone_aware"
    operator = world.factory.user(Role.operator, world.owner, password=None)
    body = world.body([camera.id], now - H, now)
    assert client.post("/api/v1/exports", json=body, headers=operator.headers).status_code == 403


# --- decisions, failures, expiry -------------------------------------------------------------


def _filed(
    client: TestClient, world: World, camera: Any, start: dt.datetime, end: dt.datetime
) -> Any:
    resp = client.post(
        "/api/v1/exports", json=world.body([camera.id], start, end), headers=world.police.headers
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_reject_releases_the_hold_and_tells_the_requester(
    client: TestClient, world: World, factory: Factory
) -> None:
    camera = world.camera()
    now = utcnow()
    factory.segment(camera, start=now - H, end=now - H + 600 * S)
    req = _filed(client, world, camera, now - H, now - H + 300 * S)
    resp = client.post(
        f"/api/v1/exports/{req['id']}/reject",
        json={"reason": "Begäran saknar diarienummer från åklagare"},
        headers=world.dpo.headers,
    )
    assert resp.status_code == 200
    view = client.get(f"/api/v1/exports/{req['id']}", headers=world.police.headers).json()
    assert view["status"] == "rejected"
    assert view["decision_note"] == "Begäran saknar diarienummer från åklagare"
    assert view["decided_by"] == world.dpo.user.id
    hold = client.get(f"/api/v1/holds/{req['hold_id']}", headers=world.police.headers).json()
    assert hold["released_at"] is not None
    again = client.post(f"/api/v1/exports/{req['id']}/approve", headers=world.dpo.headers)
    assert again.status_code == 409
    assert again.json()["detail"][0]["msg"] == "the request is rejected, not waiting for approval"
    # The police cannot approve their own request, and a DPO elsewhere does not see it.
    assert (
        client.post(
            f"/api/v1/exports/{req['id']}/approve", headers=world.police.headers
        ).status_code
        == 403
    )


def test_altered_footage_fails_the_build_and_can_be_retried(
    client: TestClient,
    world: World,
    factory: Factory,
    settings: Settings,
    sessions: Callable[[], Session],
) -> None:
    camera = world.camera()
    t0 = utcnow() - 600 * S
    segs = factory.recording(camera, settings.data_dir, start=t0, segments=2, seconds=2)
    req = _filed(client, world, camera, t0, t0 + 4 * S)
    client.post(f"/api/v1/exports/{req['id']}/approve", headers=world.dpo.headers)
    path = settings.data_dir / segs[1].path
    original = path.read_bytes()
    path.write_bytes(original[:-10] + b"\x00" * 10)
    failed = build.build_package(session_factory=sessions, settings=settings, export_id=req["id"])
    assert failed.status.value == "failed"
    assert failed.failure_reason is not None
    assert f"segment {segs[1].id} of camera {camera.id}" in failed.failure_reason
    assert "no longer matches its indexed SHA-256" in failed.failure_reason
    assert list((settings.data_dir / "exports").glob("*")) == []
    path.write_bytes(original)
    retry = client.post(f"/api/v1/exports/{req['id']}/approve", headers=world.dpo.headers)
    assert retry.json()["status"] == "approved"
    done = build.build_package(session_factory=sessions, settings=settings, export_id=req["id"])
    assert done.status.value == "ready"
    with pytest.raises(Conflict, match="the request is ready, not approved"):
        build.build_package(session_factory=sessions, settings=settings, export_id=req["id"])


def test_package_expires_and_hold_can_be_kept(
    client: TestClient,
    world: World,
    factory: Factory,
    settings: Settings,
    sessions: Callable[[], Session],
) -> None:
    camera = world.camera()
    t0 = utcnow() - 600 * S
    factory.recording(camera, settings.data_dir, start=t0, segments=1, seconds=2)
    req = _filed(client, world, camera, t0, t0 + 2 * S)
    client.post(f"/api/v1/exports/{req['id']}/approve", headers=world.dpo.headers)
    build.build_package(session_factory=sessions, settings=settings, export_id=req["id"])
    assert build.expire_packages(session_factory=sessions, settings=settings) == 0
    later = utcnow() + dt.timedelta(hours=settings.export_ttl_hours + 1)
    assert build.expire_packages(session_factory=sessions, settings=settings, now=later) == 1
    assert list((settings.data_dir / "exports").glob("*.zip")) == []
    view = client.get(f"/api/v1/exports/{req['id']}", headers=world.police.headers).json()
    assert view["status"] == "expired"
    resp = client.get(f"/api/v1/exports/{req['id']}/download", headers=world.police.headers)
    assert resp.status_code == 409
    closed = client.post(
        f"/api/v1/exports/{req['id']}/close", json={"keep_hold": True}, headers=world.police.headers
    ).json()
    assert (closed["status"], closed["keep_hold"]) == ("closed", True)
    hold = client.get(f"/api/v1/holds/{req['hold_id']}", headers=world.police.headers).json()
    assert hold["released_at"] is None


# --- the camera search and the public key -----------------------------------------------------


def test_police_find_cameras_near_a_point_across_organisations(
    client: TestClient, world: World, factory: Factory, session: Session
) -> None:
    other_org = factory.org("Kommunen")
    now = utcnow()
    near = world.camera(
        name="Nära",
        lat=57.70890,
        lon=11.97460,
        source={"kind": "rtsp", "url": "rtsp://u:pw@10.0.0.5/a"},
    )
    factory.segment(near, start=now - H, end=now - H + 600 * S)
    factory.camera(other_org, name="Mitt emot", lat=57.70950, lon=11.97460)  # ~67 m
    factory.camera(other_org, name="Långt bort", lat=57.72000, lon=11.97460)  # ~1.2 km
    factory.camera(
        other_org,
        name="Nedlagd",
        lat=57.70891,
        lon=11.97461,
        status="decommissioned",
        decommissioned_at=now - 200 * H,
    )
    params: dict[str, str | float] = {
        "lat": 57.70890,
        "lon": 11.97460,
        "radius_m": 500,
        "start": (now - H).isoformat(),
        "end": (now - H + 300 * S).isoformat(),
    }
    resp = client.get("/api/v1/cameras/near", params=params, headers=world.police.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [c["name"] for c in body["items"]] == ["Nära", "Mitt emot"]
    assert body["total"] == 2
    first, second = body["items"]
    assert first["distance_m"] == 0.0
    assert 60 < second["distance_m"] < 75
    assert first["owner"] == {
        "organisation_id": world.owner.id,
        "organisation": "Bostadsbolaget AB",
        "contact_name": "Fastighetsansvarig",
        "contact_email": "fastighet@example.se",
        "contact_phone": None,
    }
    assert first["footage"]["available"] is True
    assert second["footage"]["available"] is False
    assert "rtsp" not in resp.text
    assert "10.0.0.5" not in resp.text
    assert "source" not in first
    # Page through, and the search is in the audit log.
    page = client.get(
        "/api/v1/cameras/near",
        params=params | {"limit": 1, "offset": 1},
        headers=world.police.headers,
    ).json()
    assert [c["name"] for c in page["items"]] == ["Mitt emot"]
    assert "export.camera_search" in _actions(session, world.police_org.id)
    bad = client.get(
        "/api/v1/cameras/near",
        params={"lat": 95, "lon": 0, "radius_m": 10},
        headers=world.police.headers,
    )
    assert bad.status_code == 422
    half = client.get(
        "/api/v1/cameras/near",
        params={"lat": 57.7, "lon": 11.9, "radius_m": 10, "start": params["start"]},
        headers=world.police.headers,
    )
    assert _problems(half) == [("invalid", "give both start and end, or neither")]


def test_public_key_is_public_stable_and_audited_once(
    client: TestClient, session: Session, settings: Settings
) -> None:
    first = client.get("/api/v1/exports/public-key")
    second = client.get("/api/v1/exports/public-key")
    assert first.status_code == 200
    assert first.text.startswith("-----BEGIN PUBLIC KEY-----")
    assert first.text == second.text
    assert first.headers["content-type"].startswith("application/x-pem-file")
    fingerprint = first.headers["x-key-fingerprint-sha256"]
    entries, _ = audit.list_entries(
        session, organisation_ids=None, limit=10, offset=0, action="export.signing_key_created"
    )
    assert [e.details["fingerprint_sha256"] for e in entries] == [fingerprint]
