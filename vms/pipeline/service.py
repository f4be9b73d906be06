"""What the pipeline routes ask for: who may see what of a camera, audit entries for every
view, recordings, ONVIF probing and one-off preview frames."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from permits.policy import Policy
from registry import service as registry_service
from registry.models import Camera
from retention import service as retention_service
from retention.models import Gap, Segment
from vms.core import audit
from vms.core.auth import Principal, principal_for
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import session_scope, utcnow
from vms.core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from vms.core.models import Role, User
from vms.core.pagination import PageParams
from vms.pipeline import tickets
from vms.pipeline.config import ANONYMISE_ALL, SourceSpec
from vms.pipeline.supervisor import build_source

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
    """A short-lived ticket for this camera's live view and snapshots (see tickets)."""
    camera = authorise_live(session=session, principal=principal, camera_id=camera_id)
    ticket, expires = tickets.issue(
        secret, user_id=principal.user_id, camera_id=camera.id, now=utcnow()
    )
    return camera, ticket, expires


def principal_from_ticket(
    *, session: Session, secret: bytes, ticket: str, camera_id: int
) -> Principal:
    user_id = tickets.verify(secret, ticket, camera_id=camera_id, now=utcnow())
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise Unauthorized("user disabled")
    return principal_for(session, user)


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
    *, session: Session, principal: Principal, segment_id: int, data_dir: Path, audited: bool
) -> tuple[Segment, Path]:
    """A segment's file for playback; audit-logged once per viewing (`audited`)."""
    principal.require_role(*RECORDING_ROLES)
    segment = retention_service.get_segment_or_raise(
        session=session, segment_id=segment_id, principal=principal
    )
    path = retention_service.resolve_segment_file(data_dir, segment)
    if not path.is_file():
        logger.error("segment %s is indexed but its file %s is missing", segment.id, segment.path)
        raise NotFound("the recording's file is missing (the retention check reports it)")
    if audited:
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
            },
        )
    return segment, path


# -- previews ---------------------------------------------------------------------------------


def authorise_preview(
    *, session: Session, principal: Principal, camera_id: int
) -> tuple[Camera, bool]:
    """(camera, raw): raw pixels under the zones only for facility managers and admins."""
    camera = camera_for(
        session=session, principal=principal, camera_id=camera_id, roles=PREVIEW_ROLES
    )
    return camera, principal.role in RAW_PREVIEW_ROLES


@dataclass(frozen=True, slots=True)
class GrabRequest:
    """Everything a one-off preview child process needs (picklable, no settings)."""

    source: SourceSpec
    plan: dict[str, Any] | None
    raw: bool
    open_timeout_s: float
    read_timeout_s: float
    models_dir: str | None


def grab_request(
    *, camera: Camera, raw: bool, settings: Settings, box: SecretBox, masking_required: bool
) -> GrabRequest:
    plan = camera.mask_plan
    if plan is None and masking_required:
        plan = ANONYMISE_ALL
    return GrabRequest(
        source=build_source(camera, box),
        plan=plan,
        raw=raw,
        open_timeout_s=settings.pipeline.open_timeout_s,
        read_timeout_s=settings.pipeline.read_timeout_s,
        models_dir=str(settings.resolved_models_dir),
    )


def _grab_in_child(request: GrabRequest, conn: Connection) -> None:
    """Child process: decode one frame, draw the plan, send PNG bytes (or an error text)."""
    try:
        import cv2

        from masking import Masker
        from masking.tool import render_preview
        from vms.pipeline.source import SourceConfig, open_config
        from vms.pipeline.worker import resolve_onvif_url

        spec = request.source
        url = (
            resolve_onvif_url(spec, request.open_timeout_s) if spec.kind == "onvif" else spec.url
        ) or ""
        config = SourceConfig(
            url, open_timeout=request.open_timeout_s, read_timeout=request.read_timeout_s
        )
        with open_config(config) as source:
            decoded = next(source.frames())
        bgr = decoded.frame.to_ndarray(format="bgr24")
        if not request.raw:
            # Everything the live view would mask (detections included), then the zones.
            Masker(request.plan, models_dir=request.models_dir).apply_bgr(bgr)
        picture = render_preview(bgr, request.plan, masked=not request.raw)
        ok, buf = cv2.imencode(".png", picture)
        conn.send(("ok", buf.tobytes()) if ok else ("error", "PNG encoding failed"))
    except Exception as exc:
        from vms.pipeline.status import clean_error

        conn.send(("error", clean_error(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def grab_preview(request: GrabRequest, timeout: float) -> bytes:
    """Decode a frame in a short-lived child process (the API process never decodes video)."""
    ctx = multiprocessing.get_context("forkserver")
    recv_end, send_end = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_grab_in_child, args=(request, send_end), daemon=True)
    process.start()
    send_end.close()
    try:
        if not recv_end.poll(timeout):
            raise Unavailable("no frame from the camera in time", code="no_frame")
        try:
            kind, payload = recv_end.recv()
        except EOFError as exc:
            raise Unavailable("the preview process failed", code="no_frame") from exc
    finally:
        recv_end.close()
        process.join(timeout=1)
        if process.is_alive():
            process.kill()
            process.join()
        process.close()
    if kind != "ok":
        raise Unavailable(f"no frame from the camera: {payload}", code="no_frame")
    data: bytes = payload
    return data


# -- ONVIF ------------------------------------------------------------------------------------


async def probe_onvif(
    *, host: str, port: int, username: str, password: str, timeout_s: float
) -> tuple[Any, str | None]:
    """Device information and profiles (URIs without credentials), and the default choice."""
    from vms.pipeline import onvif

    try:
        found = await onvif.probe(host, port, username, password, timeout=timeout_s)
    # The device is whatever the caller named: when it cannot be used, the request is at fault.
    except onvif.OnvifAuthError as exc:
        raise InvalidInput(str(exc), field="password", code="onvif_auth") from None
    except onvif.OnvifUnreachable as exc:
        raise InvalidInput(str(exc), field="host", code="onvif_unreachable") from None
    except onvif.OnvifError as exc:
        raise InvalidInput(str(exc), field="host", code="onvif_error") from None
    try:
        recommended: str | None = onvif.choose_profile(found).token
    except onvif.OnvifError:
        recommended = None
    return found, recommended
