"""Camera credentials: encrypted at rest, never in a response, a log line or an audit entry.

Every path that takes a password is exercised (RTSP URL with userinfo, separate RTSP and ONVIF
fields, CSV import, PATCH with a new password, a refused request), then the whole database, every
response and every log record are searched for the plaintext.
"""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import service
from registry.models import Camera
from tests.factories import Factory
from vms.all_models import Base
from vms.core.crypto import SecretBox

URL_PASSWORD = "Url-S3cret-9f2k"
ONVIF_PASSWORD = "Onvif-S3cret-7q1x"
CSV_PASSWORD = "Csv-S3cret-4h8m"
NEW_PASSWORD = "New-S3cret-2z5v"
REFUSED_PASSWORD = "Refused-S3cret-6c3n"
QUERY_PASSWORD = "Query-S3cret-8w4d"
SECRETS = (
    URL_PASSWORD,
    ONVIF_PASSWORD,
    CSV_PASSWORD,
    NEW_PASSWORD,
    REFUSED_PASSWORD,
    QUERY_PASSWORD,
)


def test_credentials_never_leak(
    client: TestClient, factory: Factory, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fm = factory.user("facility_manager")
    org = fm.user.organisation
    admin = factory.user("admin", org)
    dpo = factory.user("dpo", org)
    basis = factory.basis(org)
    common = {
        "purpose": "Skydd mot inbrott",
        "purpose_category": "crime_prevention",
        "mode": "live_and_recording",
        "retention_hours": 24,
        "legal_basis_id": basis.id,
        "location": {"lat": 59.3, "lon": 18.0},
    }
    bodies: list[str] = []

    def keep(resp: object) -> None:
        bodies.append(resp.text)  # type: ignore[attr-defined]
        bodies.append(str(resp.headers))  # type: ignore[attr-defined]

    r = client.post(
        "/api/v1/cameras",
        headers=fm.headers,
        json={
            **common,
            "name": "rtsp",
            "source": {"kind": "rtsp", "url": f"rtsp://viewer:{URL_PASSWORD}@10.1.2.3:554/live"},
        },
    )
    assert r.status_code == 201, r.text
    keep(r)
    rtsp_id = r.json()["id"]
    assert r.json()["source"]["url"] == "rtsp://10.1.2.3:554/live"
    assert r.json()["source"]["has_credentials"] is True
    r = client.post(
        "/api/v1/cameras",
        headers=fm.headers,
        json={
            **common,
            "name": "onvif",
            "source": {
                "kind": "onvif",
                "host": "10.1.2.4",
                "port": 8080,
                "username": "admin",
                "password": ONVIF_PASSWORD,
                "profile_token": "Profile_1",
            },
        },
    )
    assert r.status_code == 201, r.text
    keep(r)
    onvif_id = r.json()["id"]
    # Some cameras take their credentials in the query string: the same secret as userinfo.
    r = client.post(
        "/api/v1/cameras",
        headers=fm.headers,
        json={
            **common,
            "name": "query",
            "source": {
                "kind": "rtsp",
                "url": f"rtsp://10.1.2.6/live?channel=1&user=admin&password={QUERY_PASSWORD}",
            },
        },
    )
    assert r.status_code == 201, r.text
    keep(r)
    query_id = r.json()["id"]
    assert r.json()["source"]["url"] == "rtsp://10.1.2.6/live?channel=1"
    assert r.json()["source"]["has_credentials"] is True
    csv_text = (
        "name,purpose,purpose_category,mode,retention_hours,source_kind,source_url,"
        "source_username,source_password\n"
        f"csv,Skydd,safety,live,0,rtsp,rtsp://10.1.2.5/s,op,{CSV_PASSWORD}\n"
    )
    r = client.post(
        "/api/v1/cameras/import",
        headers=fm.headers,
        files={"file": ("reg.csv", csv_text.encode(), "text/csv")},
    )
    assert r.status_code == 200, r.text
    keep(r)
    csv_id = r.json()["camera_ids"][0]
    r = client.patch(
        f"/api/v1/cameras/{rtsp_id}",
        headers=fm.headers,
        json={"source": {"kind": "rtsp", "url": f"rtsp://viewer:{NEW_PASSWORD}@10.1.2.3:554/live"}},
    )
    assert r.status_code == 200, r.text
    keep(r)
    # A refused request must not echo the password either (bad port in the URL).
    r = client.post(
        "/api/v1/cameras",
        headers=fm.headers,
        json={
            **common,
            "name": "bad",
            "source": {"kind": "rtsp", "url": f"rtsp://viewer:{REFUSED_PASSWORD}@10.1.2.3:99999/x"},
        },
    )
    assert r.status_code == 422
    keep(r)
    # A CSV with a bad row that holds a password: the error report names the row, not the secret.
    bad_csv = csv_text.replace("rtsp://10.1.2.5/s", f"rtsp://u:{REFUSED_PASSWORD}@/nohost")
    r = client.post(
        "/api/v1/cameras/import",
        headers=fm.headers,
        files={"file": ("reg.csv", bad_csv.encode(), "text/csv")},
    )
    assert r.status_code == 422
    keep(r)

    for path in (
        "/api/v1/cameras",
        f"/api/v1/cameras/{rtsp_id}",
        f"/api/v1/cameras/{onvif_id}",
        f"/api/v1/cameras/{csv_id}",
        f"/api/v1/cameras/{query_id}",
        f"/api/v1/cameras/{rtsp_id}/policy",
        "/api/v1/cameras.geojson",
        "/api/v1/register",
        "/api/v1/register?format=csv",
        "/api/v1/compliance",
        "/api/v1/audit?limit=500",
    ):
        for actor in (admin, dpo):
            r = client.get(path, headers=actor.headers)
            assert r.status_code == 200, (path, r.text)
            keep(r)
    r = client.delete(f"/api/v1/cameras/{onvif_id}", headers=fm.headers)
    keep(r)

    everything = "\n".join(bodies)
    for secret in SECRETS:
        assert secret not in everything, f"{secret} appeared in an API response"
        assert secret not in caplog.text, f"{secret} appeared in a log line"
        for record in caplog.records:
            assert secret not in str(record.args)

    # The whole database, every table and column, holds no plaintext password.
    session.flush()
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).all():
            dumped = repr(tuple(row))
            for secret in SECRETS:
                assert secret not in dumped, f"{secret} stored in plaintext in {table.name}"

    # ...and yet the decoder gets them back with the installation key.
    box = client.app.state.secret_box  # type: ignore[attr-defined]
    assert isinstance(box, SecretBox)
    rtsp = session.get(Camera, rtsp_id)
    onvif = session.get(Camera, onvif_id)
    csv_cam = session.get(Camera, csv_id)
    assert rtsp is not None
    assert onvif is not None
    assert csv_cam is not None
    assert rtsp.source_url == "rtsp://10.1.2.3:554/live"
    assert service.stream_url(camera=rtsp, box=box) == (
        f"rtsp://viewer:{NEW_PASSWORD}@10.1.2.3:554/live"
    )
    assert service.source_credentials(camera=onvif, box=box) == ("admin", ONVIF_PASSWORD)
    assert service.source_credentials(camera=csv_cam, box=box) == ("op", CSV_PASSWORD)
    query_cam = session.get(Camera, query_id)
    assert query_cam is not None
    assert service.stream_url(camera=query_cam, box=box) == (
        f"rtsp://10.1.2.6/live?channel=1&user=admin&password={QUERY_PASSWORD}"
    )


def test_changing_host_needs_the_credentials_again(client: TestClient, factory: Factory) -> None:
    """Otherwise an editor could send the stored password to a server of their choosing."""
    fm = factory.user("facility_manager")
    camera = factory.camera(
        fm.user.organisation,
        source={"kind": "rtsp", "url": "rtsp://viewer:pw-1@10.0.0.1:554/live"},
    )
    url = f"/api/v1/cameras/{camera.id}"
    # Same host and port, new path: the stored credentials are kept.
    r = client.patch(
        url, headers=fm.headers, json={"source": {"kind": "rtsp", "url": "rtsp://10.0.0.1:554/sub"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"]["has_credentials"] is True
    r = client.patch(
        url, headers=fm.headers, json={"source": {"kind": "rtsp", "url": "rtsp://evil.example/x"}}
    )
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {
            "code": "credentials_required",
            "msg": "the source points at another host or port: give username and password again "
            "(or null for none)",
            "field": "source.password",
        }
    ]
    r = client.patch(
        url,
        headers=fm.headers,
        json={"source": {"kind": "rtsp", "url": "rtsp://evil.example/x", "password": None}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"]["has_credentials"] is False


def test_onvif_credentials_kept_on_same_host(client: TestClient, factory: Factory) -> None:
    fm = factory.user("facility_manager")
    camera = factory.camera(
        fm.user.organisation,
        source={"kind": "onvif", "host": "10.0.0.9", "port": 80, "username": "a", "password": "b"},
    )
    r = client.patch(
        f"/api/v1/cameras/{camera.id}",
        headers=fm.headers,
        json={"source": {"kind": "onvif", "host": "10.0.0.9", "profile_token": "sub"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"]["has_credentials"] is True
    assert r.json()["source"]["profile_token"] == "sub"
    r = client.patch(
        f"/api/v1/cameras/{camera.id}",
        headers=fm.headers,
        json={"source": {"kind": "onvif", "host": "10.0.0.9", "port": 8080}},
    )
    assert r.status_code == 422


def test_query_credentials_are_scrubbed_and_kept_like_userinfo(
    client: TestClient, factory: Factory
) -> None:
    from vms.core.crypto import scrub

    assert scrub("rtsp://cam/live?User=admin&PASSWORD=S3cret&ch=2&token=abc") == (
        "rtsp://cam/live?User=***&PASSWORD=***&ch=2&token=***"
    )
    fm = factory.user("facility_manager")
    camera = factory.camera(fm.user.organisation)
    url = f"/api/v1/cameras/{camera.id}"
    r = client.patch(
        url,
        headers=fm.headers,
        json={"source": {"kind": "rtsp", "url": "rtsp://10.0.0.7/live?pwd=S3cret-q"}},
    )
    assert r.status_code == 200, r.text
    assert "S3cret" not in r.text
    # Same host, no credentials given: the stored ones stay; another host needs them again.
    r = client.patch(
        url, headers=fm.headers, json={"source": {"kind": "rtsp", "url": "rtsp://10.0.0.7/sub"}}
    )
    assert r.json()["source"]["has_credentials"] is True
    r = client.patch(
        url, headers=fm.headers, json={"source": {"kind": "rtsp", "url": "rtsp://10.9.9.9/sub"}}
    )
    assert r.status_code == 422
