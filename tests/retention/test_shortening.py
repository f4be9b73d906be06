"""A shortened retention is not a way to destroy evidence: it applies to footage recorded after
the change, until the organisation's DPO (or an admin) confirms the purge of older footage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from retention import service
from retention.models import Segment
from tests.factories import Factory
from vms.core.db import utcnow
from vms.core.models import AuditEntry

H = dt.timedelta(hours=1)


def _left(session: Session, camera_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Segment.id).where(Segment.camera_id == camera_id).order_by(Segment.id)
        )
    )


@pytest.mark.parametrize(
    "change", [{"mode": "live"}, {"retention_hours": 0}, {"retention_hours": 2}], ids=str
)
def test_shortening_keeps_older_footage_until_the_dpo_confirms(
    client: TestClient,
    factory: Factory,
    session: Session,
    data_dir: Path,
    change: dict[str, object],
) -> None:
    org = factory.org()
    fm = factory.user("facility_manager", org)
    dpo = factory.user("dpo", org)
    camera = factory.camera(org, retention_hours=72)
    now = utcnow()
    older = [factory.segment(camera, start=now - h * H, data_dir=data_dir) for h in (50, 10)]
    url = f"/api/v1/cameras/{camera.id}"
    r = client.patch(url, headers=fm.headers, json=change)
    assert r.status_code == 200, r.text
    assert r.json()["retention_kept_hours"] == 72
    # The sweep judges the footage by the retention it was recorded under.
    report = service.sweep(session=session, data_dir=data_dir, now=utcnow() + H)
    assert report.deleted == 0
    assert _left(session, camera.id) == [s.id for s in older]
    issues = client.get("/api/v1/compliance", headers=dpo.headers).json()["items"]
    assert "retention_shortened" in {i["code"] for i in issues if i["camera_id"] == camera.id}
    update = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "camera.update", AuditEntry.target_id == str(camera.id))
        .order_by(AuditEntry.seq.desc())
    ).first()
    assert update is not None
    field = next(iter(change))
    assert update.details["values"][field]["from"] in (72, "live_and_recording")
    assert update.details["effective_retention_hours"]["from"] == 72
    assert update.details["older_footage"]["kept_hours"] == 72
    # Only the DPO (or an admin) lets the shortening reach the older footage.
    confirm = f"{url}/retention/confirm-shortening"
    assert client.post(confirm, headers=fm.headers).status_code == 403
    r = client.post(confirm, headers=dpo.headers)
    assert r.status_code == 200, r.text
    assert r.json()["retention_kept_hours"] is None
    assert client.post(confirm, headers=dpo.headers).status_code == 409
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "camera.retention_purge_confirmed")
    ).one()
    assert entry.actor_id == dpo.user.id
    assert entry.details["from_hours"] == 72
    report = service.sweep(session=session, data_dir=data_dir, now=utcnow() + H)
    assert report.deleted == 2  # 10 h and 50 h old: past 0 or 2 hours
    assert _left(session, camera.id) == []


def test_lengthening_again_ends_the_protection(
    client: TestClient, factory: Factory, session: Session
) -> None:
    org = factory.org()
    fm = factory.user("facility_manager", org)
    camera = factory.camera(org, retention_hours=72)
    url = f"/api/v1/cameras/{camera.id}"
    assert (
        client.patch(url, headers=fm.headers, json={"retention_hours": 24}).json()[
            "retention_kept_hours"
        ]
        == 72
    )
    # Shortened twice: older footage keeps the longest retention it had.
    assert (
        client.patch(url, headers=fm.headers, json={"retention_hours": 1}).json()[
            "retention_kept_hours"
        ]
        == 72
    )
    r = client.patch(url, headers=fm.headers, json={"retention_hours": 72})
    assert r.json()["retention_kept_hours"] is None
