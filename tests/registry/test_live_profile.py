"""A camera's live profile (an ONVIF substream for live view): stored, returned, carried by the
CSV import, and refused where there is no live view to show it in."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.factories import Actor, Factory
from tests.registry.helpers import body
from vms.core.models import Role

ONVIF = {"kind": "onvif", "host": "127.0.0.1", "port": 8080, "username": "admin", "password": "x"}


@pytest.fixture
def fm(factory: Factory) -> Actor:
    return factory.user(Role.facility_manager)


def test_a_live_profile_is_kept_and_only_where_there_is_live_view(
    client: TestClient, factory: Factory, fm: Actor
) -> None:
    basis = factory.basis(fm.user.organisation)
    source = {**ONVIF, "profile_token": "main", "live_profile_token": "sub"}
    created = client.post("/api/v1/cameras", json=body(basis, source=source), headers=fm.headers)
    assert created.status_code == 201, created.text
    cam = created.json()
    assert (cam["source"]["profile_token"], cam["source"]["live_profile_token"]) == ("main", "sub")
    url = f"/api/v1/cameras/{cam['id']}"

    # A recording-only camera has no live view: neither created so nor changed into one.
    refused = client.post(
        "/api/v1/cameras", json=body(basis, source=source, mode="recording"), headers=fm.headers
    )
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert [(d["field"], d["code"]) for d in detail] == [
        ("source.live_profile_token", "live_profile_without_live_view")
    ]
    changed = client.patch(url, json={"mode": "recording"}, headers=fm.headers)
    assert changed.status_code == 422, changed.text
    assert changed.json()["detail"][0]["code"] == "live_profile_without_live_view"
    # ... unless the live profile goes in the same request.
    source_without = {k: v for k, v in source.items() if k != "live_profile_token"}
    resp = client.patch(
        url, json={"mode": "recording", "source": source_without}, headers=fm.headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["source"]["live_profile_token"] is None

    # Only ONVIF sources have profiles.
    rtsp = {"kind": "rtsp", "url": "rtsp://127.0.0.1:8554/cam", "live_profile_token": "sub"}
    resp = client.post("/api/v1/cameras", json=body(basis, source=rtsp), headers=fm.headers)
    assert resp.status_code == 422, resp.text
    assert "live_profile_token" in resp.text
    # Bounded like the profile token.
    long = {**source, "live_profile_token": "x" * 101}
    resp = client.post("/api/v1/cameras", json=body(basis, source=long), headers=fm.headers)
    assert resp.status_code == 422, resp.text


def test_the_csv_import_carries_the_live_profile(client: TestClient, factory: Factory) -> None:
    from tests.registry.test_import import HEADER, post, rows, to_csv

    fm = factory.user(Role.facility_manager)
    basis = factory.basis(fm.user.organisation)
    data = rows(2, basis.id)
    header = [*HEADER, "source_host", "source_port", "source_profile_token",
              "source_live_profile_token"]  # fmt: skip
    for row in data:
        row |= {"source_kind": "onvif", "source_url": "", "source_host": "10.0.0.9",
                "source_port": "80", "source_profile_token": "main",
                "source_live_profile_token": "sub"}  # fmt: skip
    data[1]["mode"] = "recording"  # row 3
    refused = post(client, fm, to_csv(data, header=header))
    assert refused.status_code == 422, refused.text
    assert [d["field"] for d in refused.json()["detail"]] == ["rows.3.source_live_profile_token"]
    data[1]["mode"] = "live_and_recording"
    created = post(client, fm, to_csv(data, header=header))
    assert created.status_code == 200, created.text
    first = created.json()["camera_ids"][0]
    cam = client.get(f"/api/v1/cameras/{first}", headers=fm.headers).json()
    assert cam["source"]["live_profile_token"] == "sub"
