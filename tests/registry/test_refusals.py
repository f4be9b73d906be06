"""Every way a camera registration is refused, with the exact field and message."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Actor, Factory
from tests.registry.helpers import body, errors
from vms.core.models import Organisation


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
            [("source.path", "must be inside the sample-media or import directory")],
            id="file outside the roots",
        ),
        pytest.param(
            {"source": {"kind": "file", "path": "../../../etc/passwd"}},
            [("source.path", "must be inside the sample-media or import directory")],
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
