"""Whether a recipient's police or operator user may watch a shared camera now: live video
(`StreamGrant`) or its recordings (`RecordingsGrant`, never footage from before the sharing).
Refusals do not reveal cameras that are not shared."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from registry import service as registry_service
from sharing.coverage import agreements_covering
from sharing.models import ShareScope, SharingAgreement
from sharing.roles import VIEWER_ROLES
from vms.core.auth import Principal
from vms.core.db import utcnow
from vms.core.errors import Conflict, Forbidden, NotFound

if TYPE_CHECKING:
    from registry.models import Camera


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What `authorise_stream` found: the recipient may watch this camera under this agreement."""

    camera_id: int
    agreement_id: int
    owner_organisation_id: int
    recipient_organisation_id: int


def _shared_camera(
    session: Session, principal: Principal, camera_id: int, at: dt.datetime | None
) -> tuple[Camera, list[SharingAgreement], dt.datetime]:
    """The camera and the agreements in force that share it with the principal's organisation
    (404 when none does, or the camera is their own: its existence is not revealed)."""
    principal.require_role(*VIEWER_ROLES)
    at = at or utcnow()
    camera = registry_service.get_camera(session=session, camera_id=camera_id)
    if camera is None or camera.organisation_id == principal.organisation_id:
        raise NotFound("camera not shared with your organisation", field="camera_id")
    covering = agreements_covering(
        session=session, camera=camera, recipient_organisation_id=principal.organisation_id, at=at
    )
    if not covering:
        raise NotFound("camera not shared with your organisation", field="camera_id")
    return camera, covering, at


def authorise_stream(
    *, session: Session, principal: Principal, camera_id: int, at: dt.datetime | None = None
) -> StreamGrant:
    """A recipient's police or operator user may watch a shared camera live: an agreement in
    force covers it for their organisation (404 otherwise: its existence is not revealed), and
    the owner's policy allows live view now (409)."""
    camera, covering, at = _shared_camera(session, principal, camera_id, at)
    policy = registry_service.policy(session=session, camera_id=camera.id, at=at)
    if not policy.may_view_live:
        reasons = "; ".join(policy.reasons) or "not allowed by the camera's policy"
        raise Conflict(f"live view is not allowed now: {reasons}", code="live_not_allowed")
    return StreamGrant(
        camera_id=camera.id,
        agreement_id=covering[0].id,
        owner_organisation_id=camera.organisation_id,
        recipient_organisation_id=principal.organisation_id,
    )


@dataclass(frozen=True, slots=True)
class RecordingsGrant:
    """The recipient may see this camera's footage recorded since `since` (the earliest start
    of the agreements in force that share recordings: never footage from before the sharing)."""

    grant: StreamGrant
    since: dt.datetime


def authorise_recordings(
    *, session: Session, principal: Principal, camera_id: int, at: dt.datetime | None = None
) -> RecordingsGrant:
    """A recipient's police or operator user may see a shared camera's recordings: an agreement
    in force shares "live and recordings" (403 when the camera is shared live only; 404 when not
    shared at all), and the camera records (a live-only camera has nothing, 409)."""
    camera, covering, at = _shared_camera(session, principal, camera_id, at)
    with_recordings = [a for a in covering if a.scope is ShareScope.live_and_recordings]
    if not with_recordings:
        raise Forbidden("this camera is shared with your organisation as live video only")
    if camera.mode.value == "live":
        raise Conflict("the camera is live-only: it has no recordings", code="no_recordings")
    first = with_recordings[0]
    return RecordingsGrant(
        grant=StreamGrant(
            camera_id=camera.id,
            agreement_id=first.id,
            owner_organisation_id=camera.organisation_id,
            recipient_organisation_id=principal.organisation_id,
        ),
        since=min(a.valid_from for a in with_recordings),
    )
