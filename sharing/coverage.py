"""Which cameras the agreements in force share, and with whom: the agreements covering one
camera for a recipient, the recipients' list of shared cameras (with what the owner's policy
allows now), and the register's statement of who receives each camera's video."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import service as registry_service
from sharing.agreements import covers, in_force_clause
from sharing.models import ShareScope, SharingAgreement, SharingAgreementCamera
from sharing.roles import SHARED_LIST_ROLES
from sharing.schemas import SharedCameraRead, SharedVia
from vms.core import accounts
from vms.core.auth import Principal
from vms.core.db import utcnow
from vms.core.pagination import PageParams

if TYPE_CHECKING:
    from registry.models import Camera


# --- what recipients see -------------------------------------------------------------------


def agreements_in_force(
    session: Session, *, recipient_organisation_id: int | None, at: dt.datetime
) -> list[SharingAgreement]:
    stmt = select(SharingAgreement).where(in_force_clause(at))
    if recipient_organisation_id is not None:
        stmt = stmt.where(SharingAgreement.recipient_organisation_id == recipient_organisation_id)
    return list(session.scalars(stmt.order_by(SharingAgreement.id)))


def covered_by(session: Session, agreements: Sequence[SharingAgreement]) -> dict[int, list[int]]:
    """camera id -> ids of the agreements (of `agreements`) covering it, cameras in service:
    listed in the agreement, or of the site the agreement names, and always the owner's."""
    if not agreements:
        return {}
    by_id = {a.id: a for a in agreements}
    listed: dict[int, set[int]] = defaultdict(set)
    for link in session.scalars(
        select(SharingAgreementCamera).where(SharingAgreementCamera.agreement_id.in_(by_id))
    ):
        listed[link.camera_id].add(link.agreement_id)
    groups: dict[tuple[int, int], set[int]] = defaultdict(set)
    for a in agreements:
        if a.site_id is not None:
            groups[(a.owner_organisation_id, a.site_id)].add(a.id)
    out: dict[int, list[int]] = {}
    for camera, _facts in registry_service.cameras_in_service(session=session):
        ids = {i for i in listed.get(camera.id, ()) if by_id[i].owner_organisation_id
               == camera.organisation_id}  # fmt: skip
        if camera.site_id is not None:
            ids |= groups.get((camera.organisation_id, camera.site_id), set())
        if ids:
            out[camera.id] = sorted(ids)
    return out


def agreements_covering(
    *, session: Session, camera: Camera, recipient_organisation_id: int, at: dt.datetime
) -> list[SharingAgreement]:
    """Agreements in force at `at` under which the recipient may see `camera`."""
    if camera.status.value == "decommissioned":
        return []
    stmt = (
        select(SharingAgreement)
        .where(in_force_clause(at))
        .where(SharingAgreement.recipient_organisation_id == recipient_organisation_id)
        .where(covers(camera))
        .order_by(SharingAgreement.id)
    )
    return list(session.scalars(stmt))


def list_shared_cameras(
    *,
    session: Session,
    principal: Principal,
    page: PageParams,
    recipient_organisation_id: int | None = None,
) -> tuple[list[SharedCameraRead], int]:
    """Cameras of other organisations that agreements in force share with yours (admin: with
    any organisation, or the one named), with what the owner's policy allows right now."""
    principal.require_role(*SHARED_LIST_ROLES)
    recipient: int | None = principal.organisation_id
    if principal.is_admin:
        recipient = recipient_organisation_id
    elif recipient_organisation_id not in (None, principal.organisation_id):
        return [], 0
    now = utcnow()
    agreements = agreements_in_force(session, recipient_organisation_id=recipient, at=now)
    by_id = {a.id: a for a in agreements}
    covered = covered_by(session, agreements)
    ids = sorted(covered)
    window = ids[page.offset : page.offset + page.limit]
    names: dict[int, str] = {}
    out: list[SharedCameraRead] = []
    for camera_id in window:
        camera = registry_service.get_camera_or_raise(session=session, camera_id=camera_id)
        policy = registry_service.policy(session=session, camera_id=camera.id, at=now)
        org = camera.organisation_id
        if org not in names:
            names[org] = accounts.get_organisation_or_raise(
                session=session, organisation_id=org
            ).name
        via = [by_id[i] for i in covered[camera_id]]
        out.append(
            SharedCameraRead(
                camera_id=camera.id,
                name=camera.name,
                owner_organisation_id=org,
                owner=names[org],
                address=camera.address,
                lat=camera.lat,
                lon=camera.lon,
                direction_deg=camera.direction_deg,
                purpose=camera.purpose,
                mode=camera.mode.value,
                live_now=policy.may_view_live,
                reasons=list(policy.reasons),
                recordings_shared=camera.mode.value != "live"
                and any(a.scope is ShareScope.live_and_recordings for a in via),
                agreements=[
                    SharedVia(agreement_id=a.id, scope=a.scope, valid_until=a.valid_until)
                    for a in via
                ],
            )
        )
    return out, len(ids)


# --- the register's recipients -------------------------------------------------------------


def recipients_in_force(
    *, session: Session, camera_ids: Sequence[int], at: dt.datetime
) -> dict[int, list[str]]:
    """camera id -> who receives its video under agreements in force at `at`, as the register
    states it: "<recipient> (sharing agreement <id>: live video[ and recordings], until ...)"."""
    wanted = set(camera_ids)
    agreements = agreements_in_force(session, recipient_organisation_id=None, at=at)
    by_id = {a.id: a for a in agreements}
    names: dict[int, str] = {}
    out: dict[int, list[str]] = {}
    for camera_id, ids in covered_by(session, agreements).items():
        if camera_id not in wanted:
            continue
        camera = registry_service.get_camera(session=session, camera_id=camera_id)
        live_only = camera is None or camera.mode.value == "live"
        texts = []
        for agreement_id in ids:
            a = by_id[agreement_id]
            org = a.recipient_organisation_id
            if org not in names:
                names[org] = accounts.get_organisation_or_raise(
                    session=session, organisation_id=org
                ).name
            # A live-only camera stays live-only for every recipient, whatever the scope.
            shares_recordings = a.scope is ShareScope.live_and_recordings and not live_only
            what = "live video and recordings" if shares_recordings else "live video"
            until = f", until {a.valid_until.date().isoformat()}" if a.valid_until else ""
            texts.append(f"{names[org]} (sharing agreement {a.id}: {what}{until})")
        out[camera_id] = texts
    return out
