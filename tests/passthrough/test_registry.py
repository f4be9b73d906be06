"""Which cameras may record passthrough, who may retry a failed one, and what the register,
the camera record and the DPO's compliance report say about verification."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry import passthrough
from registry.models import PassthroughStatus
from tests.factories import Actor, Factory
from tests.registry.helpers import MASK, body
from vms.core.models import Role

ONVIF = {"kind": "onvif", "host": "127.0.0.1", "port": 8080, "username": "admin", "password": "x"}
DETECT = {"version": 1, "default": "keep", "detect": {"classes": ["face"]}}


@pytest.fixture
def fm(factory: Factory) -> Actor:
    return factory.user(Role.facility_manager)


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        pytest.param({"source": {"kind": "rtsp", "url": "rtsp://127.0.0.1:8554/cam"}},
                     "passthrough_needs_onvif", id="rtsp source"),
        pytest.param({"source": ONVIF, "mode": "live"}, "passthrough_needs_recording",
                     id="live only"),
        pytest.param({"source": ONVIF, "mask_plan": DETECT}, "passthrough_needs_static_plan",
                     id="detector plan"),
    ],
)  # fmt: skip
def test_passthrough_needs_an_onvif_camera_that_records_with_a_static_plan(
    client: TestClient, factory: Factory, fm: Actor, extra: dict[str, Any], code: str
) -> None:
    basis = factory.basis(fm.user.organisation)
    resp = client.post(
        "/api/v1/cameras",
        json=body(basis, recording_path="passthrough", **extra),
        headers=fm.headers,
    )
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert [(d["field"], d["code"]) for d in detail] == [("recording_path", code)], detail


def test_a_passthrough_camera_keeps_to_the_rules_when_changed(
    client: TestClient, factory: Factory, fm: Actor
) -> None:
    basis = factory.basis(fm.user.organisation)
    created = client.post(
        "/api/v1/cameras",
        json=body(basis, source=ONVIF, mask_plan=MASK, recording_path="passthrough"),
        headers=fm.headers,
    )
    assert created.status_code == 201, created.text
    cam = created.json()
    assert cam["recording_path"] == "passthrough"
    assert cam["passthrough"]["status"] is None  # not run yet
    url = f"/api/v1/cameras/{cam['id']}"
    for change, code in [
        ({"mask_plan": DETECT}, "passthrough_needs_static_plan"),
        ({"mode": "live"}, "passthrough_needs_recording"),
        ({"source": {"kind": "rtsp", "url": "rtsp://127.0.0.1/x"}}, "passthrough_needs_onvif"),
    ]:
        resp = client.patch(url, json=change, headers=fm.headers)
        assert resp.status_code == 422, resp.text
        assert resp.json()["detail"][0]["code"] == code
    # Back to transcoding: then detectors are fine (in the same request).
    resp = client.patch(
        url, json={"recording_path": "transcode", "mask_plan": DETECT}, headers=fm.headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["recording_path"] == "transcode"


def test_retry_forgets_a_failure_for_the_cameras_own_managers_only(
    client: TestClient, factory: Factory, fm: Actor
) -> None:
    org = fm.user.organisation
    camera = factory.camera(org, source=ONVIF, mask_plan=MASK, recording_path="passthrough")
    at = dt.datetime.now(dt.UTC)
    passthrough.failed(
        session=factory.session, organisation_id=org.id, camera_id=camera.id,
        plan_hash=camera.mask_plan_hash, at=at, status=PassthroughStatus.failed,
        reason="unmasked", detail="unmasked: masked 0.0%", quarantined=1,
    )  # fmt: skip
    read = client.get(f"/api/v1/cameras/{camera.id}", headers=fm.headers).json()
    assert read["passthrough"]["status"] == "failed"
    assert read["passthrough"]["reason"] == "unmasked"
    dpo = factory.user(Role.dpo, org)
    report = client.get("/api/v1/compliance", headers=dpo.headers).json()
    (entry,) = report["passthrough"]
    assert entry["camera_id"] == camera.id
    assert entry["verification"]["status"] == "failed"
    assert report["counts"]["passthrough_failed"] == 1

    url = f"/api/v1/cameras/{camera.id}/passthrough/retry"
    operator = factory.user(Role.operator, org)
    assert client.post(url, headers=operator.headers).status_code == 403
    stranger = factory.user(Role.facility_manager, factory.org())
    assert client.post(url, headers=stranger.headers).status_code == 404
    assert client.post(url, headers=dpo.headers).status_code == 403
    resp = client.post(url, headers=fm.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["passthrough"]["status"] is None
    transcoding = factory.camera(org)
    refused = client.post(f"/api/v1/cameras/{transcoding.id}/passthrough/retry", headers=fm.headers)
    assert refused.status_code == 409
    assert refused.json()["detail"][0]["code"] == "not_passthrough"


def test_verification_is_recorded_and_reported(
    client: TestClient, factory: Factory, fm: Actor
) -> None:
    org = fm.user.organisation
    camera = factory.camera(org, source=ONVIF, mask_plan=MASK, recording_path="passthrough")
    first = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    passthrough.verified(session=factory.session, camera_id=camera.id,
                         plan_hash=camera.mask_plan_hash, at=first, checks=1)  # fmt: skip
    later = first + dt.timedelta(seconds=30)
    passthrough.verified(session=factory.session, camera_id=camera.id,
                         plan_hash=camera.mask_plan_hash, at=later, checks=15)  # fmt: skip
    dpo = factory.user(Role.dpo, org)
    (entry,) = client.get("/api/v1/compliance", headers=dpo.headers).json()["passthrough"]
    v = entry["verification"]
    assert v["status"] == "verified"
    assert v["checks_passed"] == 16
    assert dt.datetime.fromisoformat(v["verified_since"]) == first
    assert dt.datetime.fromisoformat(v["last_verified_at"]) == later
