"""Legal holds: who may create, see and release them, and that all of it is audit-logged."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from retention import service
from retention.holds import expire_holds
from tests.factories import Factory
from vms.core.db import utcnow
from vms.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from vms.core.models import AuditEntry, Role
from vms.core.pagination import PageParams

H = dt.timedelta(hours=1)
ALL = PageParams(limit=500, offset=0)


def _kw(camera_ids: list[int], **over: Any) -> dict[str, Any]:
    now = utcnow()
    kw: dict[str, Any] = {
        "camera_ids": camera_ids,
        "start": now - 5 * H,
        "end": now - H,
        "case_number": "K4711-25",
        "reason": "Rån vid entrén",
        "expires_at": now + 90 * 24 * H,
    }
    kw.update(over)
    return kw


def _audit(session: Session, action: str, hold_id: int) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == action, AuditEntry.target_id == str(hold_id)
            )
        )
    )


def test_police_hold_any_camera_in_own_org(session: Session, factory: Factory) -> None:
    police_org, org_a, org_b = factory.org(), factory.org(), factory.org()
    cam_a, cam_b = factory.camera(org_a), factory.camera(org_b)
    officer = factory.user(Role.police, police_org)
    hold = service.create_hold(
        session=session, actor=officer.principal, **_kw([cam_b.id, cam_a.id, cam_a.id])
    )
    assert hold.organisation_id == police_org.id
    assert hold.created_by == officer.user.id
    assert service.hold_camera_ids(session=session, hold_ids=[hold.id])[hold.id] == sorted(
        [cam_a.id, cam_b.id]
    )
    # Each organisation whose footage is pinned finds the act in its own audit log.
    entries = _audit(session, "retention.hold_created", hold.id)
    assert sorted(e.organisation_id or 0 for e in entries) == sorted(
        [police_org.id, org_a.id, org_b.id]
    )
    assert all(e.actor_id == officer.user.id for e in entries)
    assert entries[0].details["case_number"] == "K4711-25"


def test_police_see_and_release_only_their_own(session: Session, factory: Factory) -> None:
    police_org = factory.org()
    camera = factory.camera()
    mine = factory.user(Role.police, police_org)
    colleague = factory.user(Role.police, police_org)
    hold = service.create_hold(session=session, actor=mine.principal, **_kw([camera.id]))
    assert service.get_hold_or_raise(session=session, actor=mine.principal, hold_id=hold.id)
    with pytest.raises(NotFound):
        service.get_hold_or_raise(session=session, actor=colleague.principal, hold_id=hold.id)
    rows, total = service.list_holds(session=session, actor=colleague.principal, page=ALL)
    assert (rows, total) == ([], 0)
    with pytest.raises(NotFound):
        service.release_hold(
            session=session, actor=colleague.principal, hold_id=hold.id, reason="nope"
        )
    released = service.release_hold(
        session=session, actor=mine.principal, hold_id=hold.id, reason="Åtal väckt, kopia tagen"
    )
    assert released.released_at is not None
    assert released.released_by == mine.user.id
    assert len(_audit(session, "retention.hold_released", hold.id)) == 2


def test_dpo_holds_only_cameras_they_read(session: Session, factory: Factory) -> None:
    home, client_org, stranger_org = factory.org(), factory.org(), factory.org()
    dpo = factory.user(Role.dpo, home, dpo_orgs=[client_org])
    own_cam, client_cam, strange_cam = (
        factory.camera(home),
        factory.camera(client_org),
        factory.camera(stranger_org),
    )
    hold = service.create_hold(session=session, actor=dpo.principal, **_kw([client_cam.id]))
    assert hold.organisation_id == client_org.id  # the footage's organisation
    mixed = service.create_hold(
        session=session, actor=dpo.principal, **_kw([own_cam.id, client_cam.id])
    )
    assert mixed.organisation_id == home.id
    with pytest.raises(NotFound):
        service.create_hold(session=session, actor=dpo.principal, **_kw([strange_cam.id]))


@pytest.mark.parametrize("role", [Role.operator, Role.facility_manager])
def test_other_roles_may_not_hold(session: Session, factory: Factory, role: Role) -> None:
    org = factory.org()
    camera = factory.camera(org)
    actor = factory.user(role, org)
    with pytest.raises(Forbidden):
        service.create_hold(session=session, actor=actor.principal, **_kw([camera.id]))
    with pytest.raises(Forbidden):
        service.list_holds(session=session, actor=actor.principal, page=ALL)


def test_release_by_dpo_of_the_camera(session: Session, factory: Factory) -> None:
    police_org, cam_org, other_org = factory.org(), factory.org(), factory.org()
    camera = factory.camera(cam_org)
    officer = factory.user(Role.police, police_org)
    hold = service.create_hold(session=session, actor=officer.principal, **_kw([camera.id]))
    outsider = factory.user(Role.dpo, other_org)
    with pytest.raises(NotFound):
        service.release_hold(session=session, actor=outsider.principal, hold_id=hold.id, reason="x")
    # The police organisation's DPO sees the hold (it is filed there) but the footage is not
    # theirs: seeing is not releasing.
    police_dpo = factory.user(Role.dpo, police_org)
    assert service.get_hold_or_raise(session=session, actor=police_dpo.principal, hold_id=hold.id)
    with pytest.raises(Forbidden):
        service.release_hold(
            session=session, actor=police_dpo.principal, hold_id=hold.id, reason="x"
        )
    owner_dpo = factory.user(Role.dpo, cam_org)
    rows, total = service.list_holds(session=session, actor=owner_dpo.principal, page=ALL)
    assert [h.id for h in rows] == [hold.id]
    assert total == 1
    service.release_hold(
        session=session, actor=owner_dpo.principal, hold_id=hold.id, reason="Ärendet avslutat"
    )
    with pytest.raises(Conflict):
        service.release_hold(
            session=session, actor=owner_dpo.principal, hold_id=hold.id, reason="again"
        )


def test_release_needs_a_reason(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    hold = factory.hold([camera])
    admin = factory.user(Role.admin)
    with pytest.raises(InvalidInput):
        service.release_hold(session=session, actor=admin.principal, hold_id=hold.id, reason=" ")


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"camera_ids": []}, "camera_ids"),
        ({"case_number": " "}, "case_number"),
        ({"case_number": "x" * 65}, "case_number"),
        ({"reason": ""}, "reason"),
        ({"end": utcnow() - 10 * H}, "end"),
        ({"expires_at": utcnow() - H}, "expires_at"),
        ({"start": dt.datetime(2025, 1, 1)}, "start"),
    ],
)
def test_create_validates(
    session: Session, factory: Factory, over: dict[str, object], field: str
) -> None:
    camera = factory.camera()
    admin = factory.user(Role.admin)
    with pytest.raises(InvalidInput) as exc:
        service.create_hold(session=session, actor=admin.principal, **{**_kw([camera.id]), **over})
    assert exc.value.field == field


def test_unknown_camera_is_not_found_even_for_police(session: Session, factory: Factory) -> None:
    officer = factory.user(Role.police)
    with pytest.raises(NotFound):
        service.create_hold(session=session, actor=officer.principal, **_kw([999_999]))


def test_expiry_releases_and_is_logged(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    now = utcnow()
    hold = factory.hold([camera], expires_at=now + H, now=now)
    assert expire_holds(session=session, now=now + H - dt.timedelta(seconds=1)) == []
    expired = expire_holds(session=session, now=now + H)
    assert [h.id for h in expired] == [hold.id]
    assert hold.released_at == now + H
    assert hold.release_reason == "expired"
    assert len(_audit(session, "retention.hold_expired", hold.id)) == 1
    admin = factory.user(Role.admin)
    with pytest.raises(Conflict):
        service.release_hold(session=session, actor=admin.principal, hold_id=hold.id, reason="x")
    active, _ = service.list_holds(
        session=session, actor=admin.principal, page=ALL, active=True, now=now + 2 * H
    )
    assert hold.id not in {h.id for h in active}


def test_export_can_link_its_request(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    dpo = factory.user(Role.dpo, factory.org(), dpo_orgs=[])
    admin = factory.user(Role.admin)
    hold = service.create_hold(
        session=session, actor=admin.principal, export_request_id=77, **_kw([camera.id])
    )
    assert hold.export_request_id == 77
    with pytest.raises(NotFound):
        service.get_hold_or_raise(session=session, actor=dpo.principal, hold_id=hold.id)
