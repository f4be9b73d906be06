"""Table-driven tests of the pure legal-basis policy: every branch of policy_for, permit_status,
conflicts and the schedule check."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from permits.policy import (
    BasisFacts,
    CameraFacts,
    Window,
    basis_in_force,
    conflicts,
    in_schedule,
    permit_status,
    policy_for,
)

UTC = dt.UTC
# Wednesday 15 January 2025, 12:00 UTC = 13:00 in Stockholm (CET, UTC+1).
NOW = dt.datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")

BASIS = BasisFacts(
    id=7,
    kind="assessment",
    status="in_force",
    live_view_allowed=True,
    recording_allowed=True,
    max_retention_hours=72,
    masking_required=True,
)
CAMERA = CameraFacts(
    id=1, mode="live_and_recording", status="active", retention_hours=48, basis=BASIS
)


def cam(basis: dict[str, Any] | None = None, no_basis: bool = False, **camera: Any) -> CameraFacts:
    b = None if no_basis else dataclasses.replace(BASIS, **(basis or {}))
    return dataclasses.replace(CAMERA, basis=b, **camera)


def hours(h: float) -> dt.timedelta:
    return dt.timedelta(hours=h)


# id, camera, at, (may_view_live, may_record, max_retention_hours, active_now), reasons
POLICY_TABLE: list[
    tuple[str, CameraFacts, dt.datetime, tuple[bool, bool, int, bool], tuple[str, ...]]
] = [
    ("all allowed", cam(), NOW, (True, True, 48, True), ()),
    (
        "decommissioned: nothing",
        cam(status="decommissioned"),
        NOW,
        (False, False, 48, False),
        ("camera is decommissioned",),
    ),
    (
        "paused: nothing",
        cam(status="paused"),
        NOW,
        (False, False, 48, False),
        ("camera is paused",),
    ),
    (
        "no basis: nothing, retention is the camera's",
        cam(no_basis=True, retention_hours=500),
        NOW,
        (False, False, 500, True),
        ("no legal basis linked to the camera",),
    ),
    (
        "draft basis",
        cam({"status": "draft"}),
        NOW,
        (False, False, 48, True),
        ("legal basis 7 is a draft, not in force",),
    ),
    (
        "revoked basis",
        cam({"status": "revoked"}),
        NOW,
        (False, False, 48, True),
        ("legal basis 7 is revoked",),
    ),
    (
        "expired basis",
        cam({"status": "expired"}),
        NOW,
        (False, False, 48, True),
        ("legal basis 7 has expired",),
    ),
    (
        "unknown basis status fails closed",
        cam({"status": "suspended"}),
        NOW,
        (False, False, 48, True),
        ("legal basis 7 has unknown status 'suspended'",),
    ),
    (
        "permit not valid yet",
        cam({"kind": "permit", "valid_from": NOW + hours(1)}),
        NOW,
        (False, False, 48, True),
        ("legal basis 7 is valid only from 2025-01-15T13:00:00+00:00",),
    ),
    (
        "permit valid_until passed (at == valid_until counts as passed)",
        cam({"kind": "permit", "valid_until": NOW}),
        NOW,
        (False, False, 48, True),
        ("legal basis 7 expired at 2025-01-15T12:00:00+00:00",),
    ),
    (
        "permit within its validity",
        cam({"kind": "permit", "valid_from": NOW - hours(1), "valid_until": NOW + hours(1)}),
        NOW,
        (True, True, 48, True),
        (),
    ),
    (
        "recording-only camera: no live view",
        cam(mode="recording"),
        NOW,
        (False, True, 48, True),
        ("camera mode is recording-only: no live view",),
    ),
    (
        "live-only camera: nothing recorded, retention 0",
        cam(mode="live"),
        NOW,
        (True, False, 0, True),
        ("camera mode is live-only: nothing is recorded",),
    ),
    (
        "basis forbids live view",
        cam({"live_view_allowed": False}),
        NOW,
        (False, True, 48, True),
        ("legal basis 7 does not allow live view",),
    ),
    (
        "basis forbids recording",
        cam({"recording_allowed": False}),
        NOW,
        (True, False, 48, True),
        ("legal basis 7 does not allow recording",),
    ),
    (
        "basis forbids live view, recording-only camera is unaffected",
        cam({"live_view_allowed": False}, mode="recording"),
        NOW,
        (False, True, 48, True),
        ("camera mode is recording-only: no live view",),
    ),
    (
        "basis forbids recording, live-only camera is unaffected",
        cam({"recording_allowed": False}, mode="live"),
        NOW,
        (True, False, 0, True),
        ("camera mode is live-only: nothing is recorded",),
    ),
    (
        "retention capped by the basis",
        cam(retention_hours=200),
        NOW,
        (True, True, 72, True),
        (),
    ),
    (
        "basis limit binds even after the basis lapsed",
        cam({"status": "expired", "max_retention_hours": 24}, retention_hours=200),
        NOW,
        (False, False, 24, True),
        ("legal basis 7 has expired",),
    ),
    (
        "retention 0: nothing may be stored",
        cam(retention_hours=0),
        NOW,
        (True, False, 0, True),
        ("retention is 0 hours: nothing may be stored",),
    ),
    (
        "outside the schedule (13:00 Stockholm, window 06:00-12:00)",
        cam(schedule=(Window(WEEKDAYS, dt.time(6), dt.time(12)),)),
        NOW,
        (False, False, 48, False),
        ("outside the camera's schedule",),
    ),
    (
        "inside the schedule",
        cam(schedule=(Window(WEEKDAYS, dt.time(7), dt.time(18)),)),
        NOW,
        (True, True, 48, True),
        (),
    ),
    (
        "paused and outside the schedule and no basis: every reason",
        cam(
            no_basis=True,
            status="paused",
            schedule=(Window(("sat",), dt.time(7), dt.time(18)),),
        ),
        NOW,
        (False, False, 48, False),
        (
            "camera is paused",
            "outside the camera's schedule",
            "no legal basis linked to the camera",
        ),
    ),
]


@pytest.mark.parametrize(
    ("camera", "at", "expected", "reasons"),
    [pytest.param(c, a, e, r, id=i) for i, c, a, e, r in POLICY_TABLE],
)
def test_policy_for(
    camera: CameraFacts,
    at: dt.datetime,
    expected: tuple[bool, bool, int, bool],
    reasons: tuple[str, ...],
) -> None:
    p = policy_for(camera, at)
    assert (p.may_view_live, p.may_record, p.max_retention_hours, p.active_now) == expected
    assert p.reasons == reasons
    assert p.basis_id == (camera.basis.id if camera.basis else None)


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        pytest.param(cam(), True, id="from the basis"),
        pytest.param(cam({"masking_required": False}), False, id="basis waives masking"),
        pytest.param(cam(no_basis=True), True, id="no basis: masked"),
        pytest.param(cam(status="decommissioned"), True, id="decommissioned"),
    ],
)
def test_masking_required(camera: CameraFacts, expected: bool) -> None:
    assert policy_for(camera, NOW).masking_required is expected


def test_policy_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        policy_for(CAMERA, NOW.replace(tzinfo=None))


# --- schedule --------------------------------------------------------------------------------

NIGHT = (Window(("fri",), dt.time(22), dt.time(6)),)  # Friday 22:00 to Saturday 06:00
ALL_DAY = (Window(("sun",), dt.time(0), dt.time(0)),)
SINCE_NOON = (Window(("sun",), dt.time(12), dt.time(12)),)


def local(y: int, m: int, d: int, h: int, mi: int = 0) -> dt.datetime:
    from zoneinfo import ZoneInfo

    return dt.datetime(y, m, d, h, mi, tzinfo=ZoneInfo("Europe/Stockholm"))


@pytest.mark.parametrize(
    ("schedule", "at", "tz", "expected"),
    [
        pytest.param((), NOW, "Europe/Stockholm", True, id="empty schedule: always"),
        pytest.param(
            (Window(WEEKDAYS, dt.time(7), dt.time(13)),),
            NOW,
            "Europe/Stockholm",
            False,
            id="end is exclusive (13:00 local)",
        ),
        pytest.param(
            (Window(WEEKDAYS, dt.time(7), dt.time(13)),),
            NOW,
            "UTC",
            True,
            id="same instant is 12:00 in UTC",
        ),
        pytest.param(
            (Window(WEEKDAYS, dt.time(13), dt.time(14)),),
            NOW,
            "Europe/Stockholm",
            True,
            id="start is inclusive",
        ),
        pytest.param(NIGHT, local(2025, 1, 17, 23), "Europe/Stockholm", True, id="night: fri 23"),
        pytest.param(
            NIGHT, local(2025, 1, 18, 5, 59), "Europe/Stockholm", True, id="night: sat 05:59"
        ),
        pytest.param(
            NIGHT, local(2025, 1, 18, 6), "Europe/Stockholm", False, id="night: sat 06:00"
        ),
        pytest.param(NIGHT, local(2025, 1, 17, 21), "Europe/Stockholm", False, id="night: fri 21"),
        pytest.param(NIGHT, local(2025, 1, 17, 3), "Europe/Stockholm", False, id="night: fri 03"),
        pytest.param(ALL_DAY, local(2025, 1, 19, 0), "Europe/Stockholm", True, id="00-00: sun 00"),
        pytest.param(
            ALL_DAY, local(2025, 1, 19, 23, 59), "Europe/Stockholm", True, id="00-00: sun 23:59"
        ),
        pytest.param(ALL_DAY, local(2025, 1, 20, 0), "Europe/Stockholm", False, id="00-00: mon 00"),
        pytest.param(
            SINCE_NOON, local(2025, 1, 20, 11), "Europe/Stockholm", True, id="12-12: 24 h"
        ),
        pytest.param(
            SINCE_NOON, local(2025, 1, 19, 11), "Europe/Stockholm", False, id="12-12: before"
        ),
        pytest.param(
            (Window(WEEKDAYS, dt.time(7), dt.time(8)),),
            dt.datetime(2025, 7, 2, 5, 30, tzinfo=UTC),
            "Europe/Stockholm",
            True,
            id="summer time: 05:30 UTC is 07:30 CEST",
        ),
        pytest.param(
            (Window(WEEKDAYS, dt.time(7), dt.time(8)),),
            dt.datetime(2025, 1, 15, 5, 30, tzinfo=UTC),
            "Europe/Stockholm",
            False,
            id="winter time: 05:30 UTC is 06:30 CET",
        ),
    ],
)
def test_in_schedule(
    schedule: tuple[Window, ...], at: dt.datetime, tz: str, expected: bool
) -> None:
    assert in_schedule(schedule, at, tz) is expected


# --- permit_status ---------------------------------------------------------------------------

DAY = dt.timedelta(days=1)

STATUS_TABLE: list[tuple[str, CameraFacts, str]] = [
    ("no basis", cam(no_basis=True), "missing"),
    ("revoked", cam({"status": "revoked"}), "revoked"),
    ("draft", cam({"status": "draft"}), "draft"),
    ("expired status", cam({"status": "expired"}), "expired"),
    ("valid_until passed", cam({"kind": "permit", "valid_until": NOW - DAY}), "expired"),
    ("not valid yet", cam({"kind": "permit", "valid_from": NOW + DAY}), "draft"),
    (
        # Regression: a permit that has not started yet is not "expired" because it has an end.
        "not valid yet, with an end date",
        cam({"kind": "permit", "valid_from": NOW + DAY, "valid_until": NOW + 400 * DAY}),
        "draft",
    ),
    ("retention above the basis", cam(retention_hours=100), "conflict"),
    ("records on a live-only basis", cam({"recording_allowed": False}), "conflict"),
    ("live view on a recording-only basis", cam({"live_view_allowed": False}), "conflict"),
    ("conflict outranks expiring", cam({"review_by": NOW.date()}, retention_hours=100), "conflict"),
    (
        "valid_until within 30 days",
        cam({"kind": "permit", "valid_until": NOW + 30 * DAY}),
        "expiring",
    ),
    ("valid_until in 31 days", cam({"kind": "permit", "valid_until": NOW + 31 * DAY}), "ok"),
    ("review within 30 days", cam({"review_by": (NOW + 30 * DAY).date()}), "expiring"),
    ("review overdue", cam({"review_by": (NOW - DAY).date()}), "expiring"),
    ("review in 31 days", cam({"review_by": (NOW + 31 * DAY).date()}), "ok"),
    ("in force", cam(), "ok"),
    (
        "live-only camera with long retention: nothing stored, no conflict",
        cam(mode="live", retention_hours=500),
        "ok",
    ),
    ("not_required basis", cam({"kind": "not_required"}), "ok"),
]


@pytest.mark.parametrize(
    ("camera", "expected"), [pytest.param(c, e, id=i) for i, c, e in STATUS_TABLE]
)
def test_permit_status(camera: CameraFacts, expected: str) -> None:
    assert permit_status(camera, NOW) == expected


def test_permit_status_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        permit_status(CAMERA, NOW.replace(tzinfo=None))


# --- conflicts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        pytest.param(cam(), [], id="none"),
        pytest.param(cam(no_basis=True, retention_hours=900), [], id="no basis: nothing to exceed"),
        pytest.param(
            cam(retention_hours=73),
            [
                (
                    "retention_hours",
                    "retention_hours 73 exceeds the 72 hours allowed by legal basis 7",
                )
            ],
            id="retention",
        ),
        pytest.param(
            cam({"recording_allowed": False}, mode="recording"),
            [("mode", "mode recording records, but legal basis 7 does not allow recording")],
            id="recording",
        ),
        pytest.param(
            cam({"live_view_allowed": False}, mode="live"),
            [("mode", "mode live shows live view, but legal basis 7 does not allow it")],
            id="live view",
        ),
        pytest.param(
            cam({"recording_allowed": False, "live_view_allowed": False}, retention_hours=80),
            [
                (
                    "retention_hours",
                    "retention_hours 80 exceeds the 72 hours allowed by legal basis 7",
                ),
                (
                    "mode",
                    "mode live_and_recording records, but legal basis 7 does not allow recording",
                ),
                (
                    "mode",
                    "mode live_and_recording shows live view, but legal basis 7 does not allow it",
                ),
            ],
            id="everything",
        ),
        pytest.param(
            cam({"recording_allowed": False}, mode="live", retention_hours=80), [], id="live-only"
        ),
    ],
)
def test_conflicts(camera: CameraFacts, expected: list[tuple[str, str]]) -> None:
    assert conflicts(camera) == expected


def test_basis_in_force_reports_why() -> None:
    assert basis_in_force(BASIS, NOW) == (True, None)
    assert basis_in_force(dataclasses.replace(BASIS, status="draft"), NOW) == (
        False,
        "legal basis 7 is a draft, not in force",
    )
