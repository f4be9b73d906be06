"""Playback is audited once per viewer and segment, whatever the Range header: no range, odd
spelling or failed If-Range fetches footage without an entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import Factory
from tests.media import write_mp4
from vms.core.config import Settings
from vms.core.models import AuditEntry

RANGES: list[dict[str, str]] = [
    {"Range": "bytes=1-"},
    {"Range": "bytes=-100"},
    {"Range": "BYTES=0-"},
    {"Range": "bytes=00-"},
    {"Range": "bytes=5-9", "If-Range": '"not-the-etag"'},
    {"Range": "bytes=999999999-"},
    {},
]


def _views(session: Session) -> list[tuple[int | None, int]]:
    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "recording.view").order_by(AuditEntry.seq)
    )
    return [(e.actor_id, e.details["segment_id"]) for e in entries]


@pytest.mark.parametrize("headers", RANGES, ids=lambda h: " ".join(h.values()) or "none")
def test_every_first_fetch_is_audited(
    client: TestClient,
    factory: Factory,
    session: Session,
    settings: Settings,
    tmp_path: Path,
    headers: dict[str, str],
) -> None:
    org = factory.org()
    camera = factory.camera(org)
    content = write_mp4(tmp_path / "clip.mp4").read_bytes()
    segment = factory.segment(camera, data_dir=settings.data_dir, content=content)
    viewer = factory.user("operator", org)
    url = f"/api/v1/recordings/{segment.id}/video"
    r = client.get(url, headers={**viewer.headers, **headers})
    assert r.status_code in (200, 206, 416), r.text
    assert _views(session) == [(viewer.user.id, segment.id)]
    # The player's next ranges of the same viewing add nothing; another viewer is audited.
    client.get(url, headers={**viewer.headers, "Range": "bytes=0-"})
    client.get(url, headers={**viewer.headers, "Range": "bytes=10-20"})
    other = factory.user("dpo", org)
    assert client.get(url, headers={**other.headers, **headers}).status_code in (200, 206, 416)
    assert _views(session) == [(viewer.user.id, segment.id), (other.user.id, segment.id)]
