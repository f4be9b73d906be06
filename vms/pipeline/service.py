"""What the pipeline routes ask for: who may see what of a camera, audit entries for every
view, recordings, ONVIF probing and one-off preview frames."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from permits.policy import Policy
from registry import service as registry_service
from retention import service as retention_service
from vms.core import audit
from vms.core.auth import Principal, authenticate_token_id
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import end_transaction, session_scope, utcnow
from vms.core.errors import Conflict, DomainError, InvalidInput, NotFound, Unauthorized
from vms.core.models import Role
from vms.core.pagination import PageParams
from vms.pipeline import preview, tickets
from vms.pipeline.viewing import UsedTickets, ViewingSessions

if TYPE_CHECKING:
    from registry.models import Camera
    from retention.models import Gap, Segment

logger = logging.getLogger(__name__)

LIVE_ROLES = (Role.operator, Role.facility_manager, Role.admin)
STATUS_ROLES = (Role.operator, Role.facility_manager, Role.admin, Role.dpo)
RECORDING_ROLES = (Role.operator, Role.dpo, Role.facility_manager, Role.admin)
PREVIEW_ROLES = (Role.facility_manager, Role.admin, Role.dpo)
# Who sees the zones over the raw picture (to set a plan up); everyone else over masked pixels.
RAW_PREVIEW_ROLES = (Role.facility_manager, Role.admin)
PROBE_ROLES = (Role.facility_manager, Role.admin)


class Unavailable(Conflict):
    """The pipeline or the camera cannot deliver right now (409: the camera's state, not the
    request, is the problem; retry later)."""

    def __init__(self, msg: str, code: str = "unavailable") -> None:
        super().__init__(msg=msg, code=code)


def camera_for(
    *, session: Session, principal: Principal, camera_id: int, roles: tuple[Role, ...]
) -> Camera:
    """The camera, if the principal's role is one of `roles` (403) and it may read the camera's
    organisation (404, hiding that it exists)."""
    principal.require_role(*roles)
    return registry_service.get_camera_or_raise(
        session=session, camera_id=camera_id, principal=principal
    )


def current_policy(*, session: Session, camera: Camera) -> Policy:
    return registry_service.policy(session=session, camera_id=camera.id, at=utcnow())


def authorise_live(*, session: Session, principal: Principal, camera_id: int) -> Camera:
    """Live view and snapshots: the caller's role and organisation, and the camera's policy."""
    camera = camera_for(session=session, principal=principal, camera_id=camera_id, roles=LIVE_ROLES)
    policy = current_policy(session=session, camera=camera)
    if not policy.may_view_live:
        reasons = "; ".join(policy.reasons) or "not allowed by the camera's policy"
        raise Conflict(f"live view is not allowed now: {reasons}", code="live_not_allowed")
    return camera


def live_ticket(
    *, session: Session, principal: Principal, camera_id: int, secret: bytes
) -> tuple[Camera, str, dt.datetime]:
    """A short-lived, single-use ticket for this camera's live view or a snapshot, bound to
    the caller and the token they asked with (see tickets)."""
    camera = authorise_live(session=session, principal=principal, camera_id=camera_id)
    if principal.token_id is None:
        raise Unauthorized("live-view tickets are issued to API tokens only")
    ticket, expires = tickets.issue(
        secret,
        user_id=principal.user_id,
        camera_id=camera.id,
        token_id=principal.token_id,
        now=utcnow(),
    )
    return camera, ticket, expires


def principal_from_ticket(
    *, session: Session, secret: bytes, ticket: str, camera_id: int, used: UsedTickets
) -> Principal:
    """Who a ticket lets in: its user, as long as the token it was issued under is valid. A
    ticket opens one view: presented again, it is refused."""
    claims = tickets.verify(secret, ticket, camera_id=camera_id, now=utcnow())
    principal = authenticate_token_id(session, claims.token_id)
    if principal.user_id != claims.user_id:
        raise Unauthorized("invalid live-view ticket")
    if not used.spend(claims.nonce, claims.expires):
        raise Unauthorized("this live-view ticket was used already; ask for a new one")
    return principal


LIVE_RECHECK_S = 2.0


def live_still_allowed(
    factory: sessionmaker[Session], principal: Principal, camera_id: int
) -> str | None:
    """Why an open live view must end now, or None: the token revoked or expired, the user
    deactivated, their role or organisations changed, or the camera's policy no longer allows
    live view. Asked every LIVE_RECHECK_S by every open view."""
    try:
        with session_scope(factory) as session:
            if principal.token_id is None:
                return "no token"
            current = authenticate_token_id(session, principal.token_id)
            if (current.role, current.organisation_id, current.dpo_organisation_ids) != (
                principal.role,
                principal.organisation_id,
                principal.dpo_organisation_ids,
            ):
                return "rights_changed"
            authorise_live(session=session, principal=current, camera_id=camera_id)
    except Unauthorized:
        return "token_invalid"
    except DomainError as exc:
        return "policy" if exc.code == "live_not_allowed" else "not_allowed"
    return None


def record_view(
    session: Session,
    *,
    action: str,
    principal: Principal,
    camera: Camera,
    details: dict[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        action=action,
        actor=principal,
        organisation_id=camera.organisation_id,
        target_type="camera",
        target_id=camera.id,
        details=details or {},
    )


def record_view_in_own_session(
    factory: sessionmaker[Session],
    *,
    action: str,
    principal: Principal,
    camera_id: int,
    organisation_id: int,
    details: dict[str, Any],
) -> None:
    """An audit entry written after the request's own session is gone (end of a live view)."""
    with session_scope(factory) as session:
        audit.record(
            session,
            action=action,
            actor=principal,
            organisation_id=organisation_id,
            target_type="camera",
            target_id=camera_id,
            details=details,
        )


def _record_failed_probe(
    session: Session, principal: Principal, host: str, port: int, kind: str
) -> None:
    audit.record(
        session,
        action="onvif.probe_failed",
        actor=principal,
        target_type="onvif_device",
        target_id=f"{host}:{port}",
        details={"kind": kind},
    )
    # The failed probe must be kept although the request fails (like a failed sign-in).
    session.commit()


def record_probe(
    session: Session, *, principal: Principal, host: str, port: int, profiles: int
) -> None:
    audit.record(
        session,
        action="onvif.probe",
        actor=principal,
        target_type="onvif_device",
        target_id=f"{host}:{port}",
        details={"profiles": profiles},
    )


# -- recordings -------------------------------------------------------------------------------


def list_recordings(
    *,
    session: Session,
    principal: Principal,
    camera_id: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    page: PageParams,
) -> tuple[dt.datetime, dt.datetime, list[Segment], list[Gap], int]:
    """Segments and gaps of a camera in [start, end) (default: the last 24 hours)."""
    principal.require_role(*RECORDING_ROLES)
    end = end or utcnow()
    start = start or end - dt.timedelta(hours=24)
    if end <= start:
        raise InvalidInput("end must be after start", field="end")
    segments, gaps = retention_service.list_recordings(
        session=session, principal=principal, camera_id=camera_id, start=start, end=end, page=page
    )
    total = retention_service.count_recordings(
        session=session, principal=principal, camera_id=camera_id, start=start, end=end
    )
    return start, end, segments, gaps, total


def segment_video(
    *,
    session: Session,
    principal: Principal,
    segment_id: int,
    data_dir: Path,
    viewings: ViewingSessions,
) -> tuple[Segment, Path]:
    """A segment's file for playback. Audited once per viewing session (the first request of
    this viewer for this segment within the window), whatever Range header the player sends:
    no way to fetch footage without an entry."""
    principal.require_role(*RECORDING_ROLES)
    segment = retention_service.get_segment_or_raise(
        session=session, segment_id=segment_id, principal=principal
    )
    path = retention_service.resolve_segment_file(data_dir, segment)
    if not path.is_file():
        logger.error("segment %s is indexed but its file %s is missing", segment.id, segment.path)
        raise NotFound("the recording's file is missing (the retention check reports it)")
    if viewings.starts(principal.user_id, segment.id):
        camera = registry_service.get_camera_or_raise(session=session, camera_id=segment.camera_id)
        record_view(
            session,
            action="recording.view",
            principal=principal,
            camera=camera,
            details={
                "segment_id": segment.id,
                "start": segment.start.isoformat(),
                "end": segment.end.isoformat(),
                "sha256": segment.sha256,
                "window_s": viewings.window_s,
            },
        )
    return segment, path


# -- previews ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    camera: Camera
    raw: bool  # the zones over raw pixels (setting a plan up) or over masked ones
    grab: preview.GrabRequest  # how to get a frame if no worker has one


def authorise_preview(
    *,
    session: Session,
    principal: Principal,
    camera_id: int,
    settings: Settings,
    box: SecretBox,
) -> PreviewRequest:
    """Who sees the mask preview, and over which pixels. Raw pixels under the zones are a live
    view: only for facility managers and admins, and only where the camera's policy allows live
    view (a recording-only school camera's preview is drawn over the masked frame for
    everyone)."""
    camera = camera_for(
        session=session, principal=principal, camera_id=camera_id, roles=PREVIEW_ROLES
    )
    policy = current_policy(session=session, camera=camera)
    raw = principal.role in RAW_PREVIEW_ROLES and policy.may_view_live
    grab = preview.grab_request(
        camera=camera,
        raw=raw,
        settings=settings,
        box=box,
        masking_required=policy.masking_required,
    )
    return PreviewRequest(camera, raw, grab)


def authorise_metrics(principal: Principal) -> None:
    """Per-camera metrics cover every organisation: admin only (give the scraper an admin
    token)."""
    principal.require_role(Role.admin)


# -- ONVIF ------------------------------------------------------------------------------------


async def probe_onvif(
    *,
    principal: Principal,
    host: str,
    port: int,
    username: str,
    password: str,
    settings: Settings,
    session: Session,
) -> tuple[Any, str | None, str | None]:
    """Device information and profiles (URIs without credentials), the default choice and a
    substream for live view if there is one (facility managers and admins, who register
    cameras).

    Only hosts inside the camera networks are probed, only the device's own service addresses
    are followed, and a failure says what kind it was (refused, timeout, not ONVIF, credentials)
    without a word of what the other end sent. Failed probes are audited too."""
    principal.require_role(*PROBE_ROLES)
    from vms.core import netpolicy
    from vms.pipeline import onvif

    p = settings.pipeline
    # The probe may take seconds: not inside a transaction (on SQLite, the write lock).
    await asyncio.to_thread(end_transaction, session)
    try:
        found = await onvif.probe(
            host,
            port,
            username,
            password,
            timeout=p.open_timeout_s * 2,
            networks=netpolicy.parse_networks(p.camera_networks),
            stream_hosts=p.onvif_stream_hosts,
        )
    # The device is whatever the caller named: when it cannot be used, the request is at fault.
    except onvif.OnvifError as exc:
        await asyncio.to_thread(_record_failed_probe, session, principal, host, port, exc.kind)
        field = "password" if isinstance(exc, onvif.OnvifAuthError) else "host"
        raise InvalidInput(str(exc), field=field, code=f"onvif_{exc.kind}") from None
    try:
        recommended: str | None = onvif.choose_profile(found).token
    except onvif.OnvifError:
        recommended = None
    live = onvif.choose_live_profile(found, recommended)
    return found, recommended, live.token if live is not None else None
