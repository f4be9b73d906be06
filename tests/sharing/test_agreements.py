"""Sharing agreements through the API: what a complete agreement needs, the life cycle and who
may move it, what recipients see, camera groups, documents, the register's recipients and the
DPO's report."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from sharing import service
from sharing.models import AgreementStatus
from tests.factories import Actor, Factory
from tests.sharing.helpers import DAY, PDF, agreement, create_body, stream_session
from vms.core.auth import authenticate_token
from vms.core.config import Settings
from vms.core.db import utcnow
from vms.core.models import AuditEntry, Organisation, Role

API = "/api/v1/sharing-agreements"


def _setup(factory: Factory) -> dict[str, Any]:
    city = factory.org("Stad")
    police = factory.org("Polisen RLC")
    return {
        "city": city,
        "police": police,
        "manager": factory.user(Role.facility_manager, city),
        "dpo": factory.user(Role.dpo, city, dpo_orgs=[city]),
        "officer": factory.user(Role.police, police),
        "camera": factory.camera(city, mode="live"),
    }


def _draft(client: TestClient, manager: Actor, recipient: Organisation, camera_ids: list[int],
           **extra: Any) -> dict[str, Any]:  # fmt: skip
    r = client.post(API, headers=manager.headers, json=create_body(recipient.id, camera_ids,
                                                                   **extra))  # fmt: skip
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _attach(client: TestClient, actor: Actor, agreement_id: int) -> dict[str, Any]:
    r = client.post(f"{API}/{agreement_id}/documents", headers=actor.headers,
                    files={"file": ("avtal.pdf", PDF, "application/pdf")})  # fmt: skip
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _status(client: TestClient, actor: Actor, agreement_id: int, status: str,
            reason: str | None = None) -> Any:  # fmt: skip
    return client.post(f"{API}/{agreement_id}/status", headers=actor.headers,
                       json={"status": status, "reason": reason})  # fmt: skip


def _fields(r: Any) -> set[str]:
    return {d.get("field") for d in r.json()["detail"]}


def test_a_draft_is_complete_before_the_dpo_puts_it_in_force(
    client: TestClient, factory: Factory
) -> None:
    s = _setup(factory)
    body = create_body(s["police"].id, [], valid_until=None, owner_contact=None)
    r = client.post(API, headers=s["manager"].headers, json=body)
    assert r.status_code == 201, r.text
    draft = r.json()
    assert draft["status"] == "draft"
    assert draft["owner"] == "Stad"
    assert draft["recipient"] == "Polisen RLC"
    r = _status(client, s["dpo"], draft["id"], "in_force")
    assert r.status_code == 422
    assert _fields(r) == {"valid_until", "camera_ids", "owner_contact", "documents"}
    patch = client.patch(
        f"{API}/{draft['id']}",
        headers=s["manager"].headers,
        json={
            "camera_ids": [s["camera"].id],
            "valid_until": (utcnow() + 30 * DAY).isoformat(),
            "owner_contact": {"name": "Trafikkontoret", "phone": "031-00 00 00"},
        },
    )
    assert patch.status_code == 200, patch.text
    assert patch.json()["camera_ids"] == [s["camera"].id]
    doc = _attach(client, s["manager"], draft["id"])
    assert len(doc["sha256"]) == 64
    # Duties are separated: the facility manager drafts, the owner's DPO puts it in force.
    assert _status(client, s["manager"], draft["id"], "in_force").status_code == 403
    other_dpo = factory.user(Role.dpo, factory.org())
    assert _status(client, other_dpo, draft["id"], "in_force").status_code == 404
    r = _status(client, s["dpo"], draft["id"], "in_force")
    assert r.status_code == 200, r.text
    assert r.json()["effective"] == "active"
    assert r.json()["in_force_by"] == s["dpo"].user.id
    # In force it is frozen; a revocation needs a reason; ended is final.
    frozen = client.patch(f"{API}/{draft['id']}", headers=s["manager"].headers,
                          json={"title": "Annat"})  # fmt: skip
    assert frozen.status_code == 409
    assert _status(client, s["manager"], draft["id"], "revoked").status_code == 422
    assert _status(client, s["manager"], draft["id"], "revoked", "uppsagt").status_code == 200
    assert _status(client, s["dpo"], draft["id"], "in_force").status_code == 409


def test_only_the_owners_cameras_and_only_what_they_offer(
    client: TestClient, factory: Factory
) -> None:
    s = _setup(factory)
    foreign = factory.camera(factory.org())
    recording_only = factory.camera(s["city"], mode="recording")
    cases = [
        (create_body(s["police"].id, [foreign.id]), "camera_ids", "not_found"),
        (create_body(s["police"].id, [recording_only.id]), "camera_ids", "no_live_view"),
        (
            create_body(s["police"].id, [s["camera"].id], scope="live_and_recordings"),
            "camera_ids",
            "live_only",
        ),
        (create_body(s["city"].id, [s["camera"].id]), "recipient_organisation_id", "invalid"),
        (create_body(999_999, [s["camera"].id]), "recipient_organisation_id", "not_found"),
        (
            create_body(
                s["police"].id, [s["camera"].id], valid_until=(utcnow() - 2 * DAY).isoformat()
            ),
            "valid_until",
            "invalid",
        ),
        (
            create_body(s["police"].id, [], site_id=factory.site(factory.org()).id),
            "site_id",
            "not_found",
        ),
    ]
    for body, field, code in cases:
        r = client.post(API, headers=s["manager"].headers, json=body)
        assert r.status_code == 422, (field, r.text)
        assert (field, code) in {(d.get("field"), d["code"]) for d in r.json()["detail"]}, r.text
    # Another organisation's facility manager cannot draft for this one.
    outsider = factory.user(Role.facility_manager, factory.org())
    body = create_body(s["police"].id, [s["camera"].id], owner_organisation_id=s["city"].id)
    assert client.post(API, headers=outsider.headers, json=body).status_code == 404


def test_recipients_see_agreements_in_force_and_the_cameras_shared_with_them(
    client: TestClient, factory: Factory, session: Session
) -> None:
    s = _setup(factory)
    site = factory.site(s["city"], name="Korsvägen")
    grouped = factory.camera(s["city"], site=site, mode="live")
    draft = agreement(session, s["city"], s["police"], [s["camera"]], status="draft")
    live = agreement(session, s["city"], s["police"], [], site=site)
    expired = agreement(session, s["city"], s["police"], [s["camera"]],
                        valid_from=utcnow() - 10 * DAY, valid_until=utcnow() - DAY)  # fmt: skip
    officer = s["officer"]
    assert client.get(f"{API}/{draft.id}", headers=officer.headers).status_code == 404
    r = client.get(f"{API}/{live.id}", headers=officer.headers)
    assert r.status_code == 200
    assert r.json()["site_id"] == site.id
    # Police may read the agreement but not its document (their DPO keeps it).
    doc_id = r.json()["documents"][0]["id"]
    assert client.get(f"{API}/{live.id}/documents/{doc_id}",
                      headers=officer.headers).status_code == 403  # fmt: skip
    mine = client.get(API, headers=officer.headers, params={"side": "recipient"}).json()
    assert {a["id"] for a in mine["items"]} == {live.id, expired.id}
    now = client.get(API, headers=officer.headers, params={"in_force_now": "true"}).json()
    assert [a["id"] for a in now["items"]] == [live.id]
    assert [a["effective"] for a in mine["items"]] == ["active", "expired"]
    owner_view = client.get(API, headers=s["dpo"].headers,
                            params={"camera_id": s["camera"].id}).json()  # fmt: skip
    assert {a["id"] for a in owner_view["items"]} == {draft.id, expired.id}
    # A camera added to the site later is shared too (the site is the group).
    later = factory.camera(s["city"], site=site, mode="live")
    shared = client.get("/api/v1/shared-cameras", headers=officer.headers).json()
    assert [c["camera_id"] for c in shared["items"]] == [grouped.id, later.id]
    item = shared["items"][0]
    assert item["owner"] == "Stad"
    assert item["live_now"] is True
    assert item["agreements"][0]["agreement_id"] == live.id
    assert "source" not in item
    assert "url" not in item
    other = factory.user(Role.police, factory.org())
    assert client.get("/api/v1/shared-cameras", headers=other.headers).json()["total"] == 0


def test_the_register_lists_the_recipients_of_agreements_in_force(
    client: TestClient, factory: Factory, session: Session
) -> None:
    s = _setup(factory)
    recorded = factory.camera(s["city"], mode="live_and_recording")
    vasttrafik = factory.org("Västtrafik")
    trafikverket = factory.org("Trafikverket")
    a1 = agreement(session, s["city"], vasttrafik, [s["camera"], recorded])
    a2 = agreement(session, s["city"], trafikverket, [recorded], scope="live_and_recordings")
    agreement(session, s["city"], factory.org("Utgånget AB"), [recorded],
              valid_from=utcnow() - 10 * DAY, valid_until=utcnow() - DAY)  # fmt: skip
    agreement(session, s["city"], factory.org("Utkast AB"), [recorded], status="draft")
    # Two agreements naming the same site: both recipients are stated.
    site = factory.site(s["city"])
    grouped = factory.camera(s["city"], site=site, mode="live")
    g1 = agreement(session, s["city"], vasttrafik, [], site=site)
    g2 = agreement(session, s["city"], trafikverket, [], site=site)
    r = client.get("/api/v1/register", headers=s["dpo"].headers)
    assert r.status_code == 200
    entries = {e["camera_id"]: e["recipients"] for e in r.json()["entries"]}
    until = (utcnow() + 365 * DAY).date()
    assert entries[s["camera"].id] == (
        f"authorised staff of the controller; Västtrafik (sharing agreement {a1.id}: live "
        f"video, until {until})"
    )
    assert entries[recorded.id] == (
        "authorised staff of the controller; the Police Authority and prosecutors on request, "
        f"through the audited export; Västtrafik (sharing agreement {a1.id}: live video, until "
        f"{until}); Trafikverket (sharing agreement {a2.id}: live video and recordings, until "
        f"{until})"
    )
    assert entries[grouped.id] == (
        f"authorised staff of the controller; Västtrafik (sharing agreement {g1.id}: live "
        f"video, until {until}); Trafikverket (sharing agreement {g2.id}: live video, until "
        f"{until})"
    )
    assert "Utgånget" not in r.text
    assert "Utkast" not in r.text


def test_documents_are_checked_against_their_hash(
    client: TestClient, factory: Factory, session: Session, settings: Settings
) -> None:
    s = _setup(factory)
    body = _draft(client, s["manager"], s["police"], [s["camera"].id])
    doc = _attach(client, s["manager"], body["id"])
    url = f"{API}/{body['id']}/documents/{doc['id']}"
    r = client.get(url, headers=s["dpo"].headers)
    assert r.status_code == 200
    assert r.content == PDF
    assert r.headers["x-content-sha256"] == doc["sha256"]
    stored = Path(settings.data_dir) / "documents" / doc["sha256"][:2] / f"{doc['sha256']}.pdf"
    stored.write_bytes(PDF + b"% changed\n")
    assert client.get(url, headers=s["dpo"].headers).status_code == 409
    bad = client.post(f"{API}/{body['id']}/documents", headers=s["manager"].headers,
                      files={"file": ("x.pdf", b"not a pdf", "application/pdf")})  # fmt: skip
    assert bad.status_code == 422
    actions = set(session.scalars(
        select(AuditEntry.action).where(AuditEntry.target_type == "sharing_agreement")
    ))  # fmt: skip
    assert {"sharing.agreement.create", "sharing.agreement.document.upload",
            "sharing.agreement.document.download"} <= actions  # fmt: skip


def test_the_dpos_report_counts_sessions_and_hours_by_whom(
    client: TestClient, factory: Factory, session: Session
) -> None:
    s = _setup(factory)
    row = agreement(session, s["city"], s["police"], [s["camera"]])
    second = factory.user(Role.operator, s["police"])
    start = utcnow() - dt.timedelta(hours=3)
    for user, viewed in ((s["officer"], 3600.0), (s["officer"], 1800.0), (second, 900.0)):
        stream_session(session, row, s["camera"], user.user, key=f"k{viewed:.0f}{user.user.id}",
                       started_at=start, ended_at=start + dt.timedelta(hours=1),
                       ended_by="client", viewed_seconds=viewed)  # fmt: skip
    stream_session(session, row, s["camera"], second.user, key="open1")
    r = client.get(f"{API}/{row.id}/report", headers=s["dpo"].headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["sessions"] == 4
    assert report["open_sessions"] == 1
    assert report["hours_viewed"] == 1.75
    assert {u["user_email"]: (u["sessions"], u["hours_viewed"]) for u in report["by_user"]} == {
        s["officer"].user.email: (2, 1.5),
        second.user.email: (2, 0.25),
    }
    assert client.get(f"{API}/{row.id}/report", headers=s["manager"].headers).status_code == 403
    assert client.get(f"{API}/{row.id}/report", headers=s["officer"].headers).status_code == 403
    text = client.get(f"{API}/{row.id}/report", headers=s["dpo"].headers,
                      params={"format": "csv"}).text.lstrip("\ufeff")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4
    assert rows[0]["agreement_id"] == str(row.id)
    assert rows[0]["user_email"] == s["officer"].user.email


def test_open_sessions_end_when_their_right_does(factory: Factory, session: Session) -> None:
    s = _setup(factory)
    row = agreement(session, s["city"], s["police"], [s["camera"]])
    officer = s["officer"]
    principal = authenticate_token(session, officer.token)  # with its token, as a request has

    def check(at: dt.datetime | None = None) -> str | None:
        return service.session_still_allowed(
            session=session, session_id=live.id, principal=principal, at=at
        )

    grant = service.authorise_stream(session=session, principal=principal,
                                     camera_id=s["camera"].id)  # fmt: skip
    assert grant.agreement_id == row.id
    live = service.open_session(session=session, principal=principal, grant=grant,
                                protocol="rtsp", ttl=dt.timedelta(hours=1))  # fmt: skip
    assert check() is None
    assert check(utcnow() + 2 * dt.timedelta(hours=1)) == "expired"
    assert row.valid_until is not None
    assert check(row.valid_until + dt.timedelta(seconds=1)) in ("expired", "agreement_expired")
    row.valid_until = utcnow() + dt.timedelta(minutes=30)
    assert check(row.valid_until + dt.timedelta(seconds=1)) == "agreement_expired"
    basis = session.get(type(factory.basis(s["city"])), s["camera"].legal_basis_id)
    assert basis is not None
    basis.live_view_allowed = False
    session.flush()
    assert check() == "policy"
    basis.live_view_allowed = True
    row.status = AgreementStatus.revoked
    session.flush()
    assert check() == "agreement_revoked"
    row.status = AgreementStatus.in_force
    officer.user.role = Role.facility_manager
    session.flush()
    assert check() == "rights_changed"
    officer.user.role = Role.police
    session.flush()
    assert check() is None
    ended = service.end_session(session=session, session_id=live.id, ended_by="client",
                                viewed_seconds=12.5, plays=1, first_play_at=utcnow())  # fmt: skip
    assert ended is not None
    assert check() == "ended"
    entries = session.scalars(select(AuditEntry).where(
        AuditEntry.action.in_(["sharing.session.start", "sharing.session.end"]),
        AuditEntry.target_id == str(s["camera"].id),
    ).order_by(AuditEntry.seq)).all()  # fmt: skip
    assert [e.action for e in entries] == ["sharing.session.start", "sharing.session.end"]
    assert entries[1].details["viewed_s"] == 12.5
    assert entries[1].organisation_id == s["city"].id
    assert entries[1].actor_id == officer.user.id


def test_who_may_open_a_stream(client: TestClient, factory: Factory, session: Session) -> None:
    s = _setup(factory)
    agreement(session, s["city"], s["police"], [s["camera"]])
    unshared = factory.camera(s["city"], mode="live")
    url = "/api/v1/shared-cameras/{}/stream-sessions"
    # Allowed, but the test app runs no relay: 409 after every check passed.
    r = client.post(url.format(s["camera"].id), headers=s["officer"].headers)
    assert r.status_code == 409
    assert r.json()["detail"][0]["code"] == "relay_not_running"
    assert client.post(url.format(unshared.id), headers=s["officer"].headers).status_code == 404
    dpo = factory.user(Role.dpo, s["police"])
    assert client.post(url.format(s["camera"].id), headers=dpo.headers).status_code == 403
    own = factory.user(Role.operator, s["city"])  # the owner's operators use live view
    assert client.post(url.format(s["camera"].id), headers=own.headers).status_code == 404


def test_sessions_of_a_previous_run_are_closed_at_start_up(
    factory: Factory, session: Session
) -> None:
    s = _setup(factory)
    row = agreement(session, s["city"], s["police"], [s["camera"]])
    left = stream_session(session, row, s["camera"], s["officer"].user, key="left-open")
    assert service.close_sessions_left_open(session=session, at=utcnow()) >= 1
    assert left.ended_by == "server_restart"


def test_recipients_see_recordings_only_where_shared_and_only_since_the_agreement(
    client: TestClient, factory: Factory, session: Session, settings: Settings
) -> None:
    s = _setup(factory)
    site = factory.site(s["city"])
    recorded = factory.camera(s["city"], mode="live_and_recording", site=site)
    live_only = factory.camera(s["city"], mode="live", site=site)
    now = utcnow()
    agreement(session, s["city"], s["police"], [], site=site, scope="live_and_recordings",
              valid_from=now - dt.timedelta(hours=1))  # fmt: skip
    before = factory.segment(recorded, start=now - dt.timedelta(hours=2), minutes=10,
                             data_dir=settings.data_dir)  # fmt: skip
    straddling = factory.segment(recorded, start=now - dt.timedelta(minutes=65), minutes=10,
                                 data_dir=settings.data_dir)  # fmt: skip
    since = factory.segment(recorded, start=now - dt.timedelta(minutes=30), minutes=10,
                            data_dir=settings.data_dir)  # fmt: skip
    base = f"/api/v1/shared-cameras/{recorded.id}/recordings"
    r = client.get(base, headers=s["officer"].headers)
    assert r.status_code == 200, r.text
    assert [seg["id"] for seg in r.json()["segments"]] == [since.id]
    assert r.json()["total"] == 1
    for hidden in (before, straddling):
        assert client.get(f"{base}/{hidden.id}/video",
                          headers=s["officer"].headers).status_code == 404  # fmt: skip
    for _ in range(2):
        video = client.get(f"{base}/{since.id}/video", headers=s["officer"].headers)
        assert video.status_code == 200
    views = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "sharing.recording.view")
    ).all()
    assert len(views) == 1  # once per viewer and segment
    assert views[0].details["segment_id"] == since.id
    assert views[0].organisation_id == s["city"].id
    no = client.get(f"/api/v1/shared-cameras/{live_only.id}/recordings",
                    headers=s["officer"].headers)  # fmt: skip
    assert no.status_code == 409
    live_share = factory.camera(s["city"], mode="live_and_recording")
    agreement(session, s["city"], s["police"], [live_share])
    refused = client.get(f"/api/v1/shared-cameras/{live_share.id}/recordings",
                         headers=s["officer"].headers)  # fmt: skip
    assert refused.status_code == 403
