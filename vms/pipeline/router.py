"""Routes: camera status, live view (MJPEG, snapshot), mask preview, recordings, ONVIF probe,
and the Prometheus `/metrics`. The API process never decodes video: frames come from the
camera workers through shared memory (see vms.pipeline.live)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime
from sqlalchemy.orm import Session, sessionmaker

from registry.models import Camera
from vms.core.auth import Principal, authenticate_token
from vms.core.deps import SecretBoxDep, SessionDep, SettingsDep, require_roles
from vms.core.errors import Unauthorized
from vms.core.models import Role
from vms.core.pagination import PageParams, page_params
from vms.pipeline import metrics, service
from vms.pipeline.live import PREVIEW_MASKED, PREVIEW_RAW, LiveImage
from vms.pipeline.schemas import (
    CameraStatusRead,
    GapRead,
    LiveTicketRead,
    OnvifDeviceRead,
    OnvifProbeRead,
    OnvifProbeRequest,
    OnvifProfileRead,
    RecordingsRead,
    Resolution,
    SegmentRead,
)
from vms.pipeline.status import CameraState
from vms.pipeline.supervisor import CameraStatusView, PipelineSupervisor

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")
metrics_router = APIRouter()

LiveDep = Annotated[Principal, require_roles(*service.LIVE_ROLES)]
_bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/token")


def _viewer(
    camera_id: int,
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ticket: str | None = Query(
        None, max_length=512, description="from POST .../live-ticket, for an <img> tag"
    ),
) -> Principal:
    """The API token, or a live-view ticket for this camera (a browser <img> sends no header)."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        principal = authenticate_token(session, credentials.credentials)
    elif ticket:
        principal = service.principal_from_ticket(
            session=session,
            secret=request.app.state.settings.secret_key_bytes(),
            ticket=ticket,
            camera_id=camera_id,
        )
    else:
        raise Unauthorized("missing bearer token or live-view ticket")
    principal.require_role(*service.LIVE_ROLES)
    return principal


ViewerDep = Annotated[Principal, Depends(_viewer)]
StatusDep = Annotated[Principal, require_roles(*service.STATUS_ROLES)]
RecordingsDep = Annotated[Principal, require_roles(*service.RECORDING_ROLES)]
PreviewDep = Annotated[Principal, require_roles(*service.PREVIEW_ROLES)]
ProbeDep = Annotated[Principal, require_roles(*service.PROBE_ROLES)]
AdminDep = Annotated[Principal, require_roles(Role.admin)]
PageDep = Annotated[PageParams, Depends(page_params)]

BOUNDARY = "vmsframe"
# A frame older than this is not shown: the camera stopped, and a still image would mislead.
MAX_FRAME_AGE_S = 5.0
SNAPSHOT_WAIT_S = 5.0
PREVIEW_WAIT_S = 5.0


def _supervisor(request: Request) -> PipelineSupervisor | None:
    sup: PipelineSupervisor | None = getattr(request.app.state, "pipeline", None)
    return sup if sup is not None and sup.running else None


def _require_supervisor(request: Request) -> PipelineSupervisor:
    sup = _supervisor(request)
    if sup is None:
        raise service.Unavailable(
            "the video pipeline is not running on this server", code="pipeline_not_running"
        )
    return sup


# -- status -------------------------------------------------------------------------------------


def _status_read(view: CameraStatusView) -> CameraStatusRead:
    return CameraStatusRead(
        camera_id=view.camera_id,
        state=view.state,
        reasons=list(view.reasons),
        may_view_live=view.may_view_live,
        may_record=view.may_record,
        recording=view.recording,
        resolution=(
            Resolution(width=view.width, height=view.height) if view.width and view.height else None
        ),
        input_fps=view.input_fps,
        output_fps=view.output_fps,
        frames_in=view.frames_in,
        frames_out=view.frames_out,
        dropped_frames=view.dropped_frames,
        reconnects=view.reconnects,
        restarts=view.restarts,
        segments_written=view.segments_written,
        mask_fail_closed=view.mask_fail_closed,
        live_viewers=view.live_viewers,
        last_frame_at=view.last_frame_at,
        last_error=view.last_error,
        updated_at=view.updated_at,
    )


@router.get("/cameras/{camera_id}/status", response_model=CameraStatusRead, tags=["pipeline"])
def camera_status(
    camera_id: int, request: Request, session: SessionDep, principal: StatusDep
) -> CameraStatusRead:
    """What the camera's worker is doing: state, resolution, frame rates, drops, reconnects,
    last frame and last error (operator, facility manager, admin, DPO of its organisation)."""
    camera = service.camera_for(
        session=session, principal=principal, camera_id=camera_id, roles=service.STATUS_ROLES
    )
    sup = _supervisor(request)
    view = sup.status(camera.id) if sup is not None else None
    if view is None or view.organisation_id is None:
        policy = service.current_policy(session=session, camera=camera)
        blocked = not (policy.may_view_live or policy.may_record)
        view = CameraStatusView(
            camera_id=camera.id,
            organisation_id=camera.organisation_id,
            state=CameraState.blocked if blocked and sup is not None else CameraState.stopped,
            reasons=tuple(policy.reasons),
            may_view_live=policy.may_view_live,
            may_record=policy.may_record,
            last_error=None if sup is not None else "the video pipeline is not running",
        )
    return _status_read(view)


# -- live ---------------------------------------------------------------------------------------


async def _mjpeg(
    *,
    sup: PipelineSupervisor,
    sessions: sessionmaker[Session],
    principal: Principal,
    camera_id: int,
    organisation_id: int,
    live_id: str,
    fps: float,
) -> AsyncIterator[bytes]:
    started = time.monotonic()
    frames = 0
    ended_by = "client"
    sup.add_viewer(camera_id)
    try:
        seq = 0
        while True:
            if not sup.live_allowed(camera_id):
                ended_by = "policy"
                break
            image = sup.latest_frame(camera_id, seq)
            if image is not None:
                seq = image.seq
                if time.time() - image.at <= MAX_FRAME_AGE_S:
                    frames += 1
                    yield (
                        (
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(image.data)}\r\n\r\n"
                        ).encode()
                        + image.data
                        + b"\r\n"
                    )
            await asyncio.sleep(1.0 / fps)
    finally:
        sup.remove_viewer(camera_id)
        details = {
            "live_session": live_id,
            "duration_s": round(time.monotonic() - started, 1),
            "frames": frames,
            "ended_by": ended_by,
        }
        # The client is gone and this task may be cancelled: the audit entry is written anyway.
        with anyio.CancelScope(shield=True):
            try:
                await run_in_threadpool(
                    lambda: service.record_view_in_own_session(
                        sessions,
                        action="live.end",
                        principal=principal,
                        camera_id=camera_id,
                        organisation_id=organisation_id,
                        details=details,
                    )
                )
            except Exception:
                logger.exception("camera %s: cannot audit the end of a live view", camera_id)


@router.get(
    "/cameras/{camera_id}/live.mjpeg",
    response_class=StreamingResponse,
    tags=["pipeline"],
    responses={
        200: {
            "content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}},
            "description": "Masked live video as MJPEG (plays in an <img>).",
        }
    },
)
def live_mjpeg(
    camera_id: int,
    request: Request,
    session: SessionDep,
    principal: ViewerDep,
    settings: SettingsDep,
) -> StreamingResponse:
    """Masked live view (operator, facility manager, admin of the camera's organisation, while
    its policy allows live view). Start and end of every view are audit-logged."""
    camera = service.authorise_live(session=session, principal=principal, camera_id=camera_id)
    sup = _require_supervisor(request)
    live_id = secrets.token_hex(8)
    service.record_view(
        session,
        action="live.start",
        principal=principal,
        camera=camera,
        details={"live_session": live_id},
    )
    return StreamingResponse(
        _mjpeg(
            sup=sup,
            sessions=request.app.state.sessionmaker,
            principal=principal,
            camera_id=camera.id,
            organisation_id=camera.organisation_id,
            live_id=live_id,
            fps=settings.pipeline.live_fps,
        ),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/cameras/{camera_id}/live-ticket", response_model=LiveTicketRead, tags=["pipeline"])
def live_ticket(
    camera_id: int, request: Request, session: SessionDep, principal: LiveDep
) -> LiveTicketRead:
    """A ticket valid for a minute that lets an <img> tag open this camera's live view (same
    rules as the live view itself)."""
    camera, ticket, expires = service.live_ticket(
        session=session,
        principal=principal,
        camera_id=camera_id,
        secret=request.app.state.settings.secret_key_bytes(),
    )
    base = f"/api/v1/cameras/{camera.id}"
    return LiveTicketRead(
        ticket=ticket,
        live_url=f"{base}/live.mjpeg?ticket={ticket}",
        snapshot_url=f"{base}/snapshot.jpg?ticket={ticket}",
        expires_at=expires,
    )


async def _fresh_frame(sup: PipelineSupervisor, camera_id: int) -> LiveImage | None:
    """A frame decoded after this call started (the worker encodes while we count as viewer)."""
    if not sup.add_viewer(camera_id):
        return None
    try:
        since = time.time() - 0.5
        deadline = time.monotonic() + SNAPSHOT_WAIT_S
        while time.monotonic() < deadline:
            image = sup.latest_frame(camera_id)
            if image is not None and image.at >= since:
                return image
            await asyncio.sleep(0.03)
        return None
    finally:
        sup.remove_viewer(camera_id)


@router.get(
    "/cameras/{camera_id}/snapshot.jpg",
    response_class=Response,
    tags=["pipeline"],
    responses={200: {"content": {"image/jpeg": {}}, "description": "The latest masked frame."}},
)
async def snapshot(
    camera_id: int, request: Request, session: SessionDep, principal: ViewerDep
) -> Response:
    """The latest masked frame as JPEG (same rules as live view; audit-logged)."""
    camera = await run_in_threadpool(
        lambda: service.authorise_live(session=session, principal=principal, camera_id=camera_id)
    )
    sup = _require_supervisor(request)
    image = await _fresh_frame(sup, camera.id)
    if image is None:
        raise service.Unavailable("no frame from the camera right now", code="no_frame")
    frame_at = dt.datetime.fromtimestamp(image.at, dt.UTC).isoformat()
    await run_in_threadpool(
        lambda: service.record_view(
            session,
            action="live.snapshot",
            principal=principal,
            camera=camera,
            details={"frame_at": frame_at},
        )
    )
    return Response(image.data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get(
    "/cameras/{camera_id}/mask-preview.png",
    response_class=Response,
    tags=["pipeline"],
    responses={200: {"content": {"image/png": {}}, "description": "The plan drawn on a frame."}},
)
async def mask_preview(
    camera_id: int,
    request: Request,
    session: SessionDep,
    principal: PreviewDep,
    settings: SettingsDep,
    box: SecretBoxDep,
) -> Response:
    """The camera's mask plan drawn over its current picture: over the raw frame for facility
    managers and admins when the policy allows live view, otherwise over the masked frame.
    Audit-logged."""

    def authorise() -> tuple[Camera, bool, service.GrabRequest]:
        camera, raw = service.authorise_preview(
            session=session, principal=principal, camera_id=camera_id
        )
        policy = service.current_policy(session=session, camera=camera)
        # Raw pixels under the zones are a live view: only where the policy allows one (a
        # recording-only school camera's preview is drawn over the masked frame, for everyone).
        raw = raw and policy.may_view_live
        grab = service.grab_request(
            camera=camera,
            raw=raw,
            settings=settings,
            box=box,
            masking_required=policy.masking_required,
        )
        return camera, raw, grab

    camera, raw, grab = await run_in_threadpool(authorise)
    png: bytes | None = None
    sup = _supervisor(request)
    if sup is not None:
        request_id = sup.request_preview(camera_id, PREVIEW_RAW if raw else PREVIEW_MASKED)
        if request_id is not None:
            deadline = time.monotonic() + PREVIEW_WAIT_S
            while png is None and time.monotonic() < deadline:
                answer = sup.preview(camera_id, request_id)
                png = answer.data if answer is not None else None
                if png is None:
                    await asyncio.sleep(0.05)
    source = "worker"
    if png is None:
        # No worker runs (blocked, pipeline off) or it had no frame: decode one in a child.
        source = "source"
        png = await run_in_threadpool(
            service.grab_preview, grab, settings.pipeline.open_timeout_s * 3
        )
    await run_in_threadpool(
        lambda: service.record_view(
            session,
            action="camera.mask_preview",
            principal=principal,
            camera=camera,
            details={"raw_frame": raw, "frame_from": source},
        )
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


# -- recordings ---------------------------------------------------------------------------------


@router.get("/recordings", response_model=RecordingsRead, tags=["recordings"])
def list_recordings(
    session: SessionDep,
    principal: RecordingsDep,
    page: PageDep,
    camera_id: int = Query(..., ge=1),
    start: AwareDatetime | None = Query(None, description="default: 24 hours before end"),
    end: AwareDatetime | None = Query(None, description="default: now"),
) -> RecordingsRead:
    """A camera's segments and gaps in [start, end) (operator, DPO, facility manager, admin of
    organisations they can read; the police get footage only through exports)."""
    start, end, segments, gaps, total = service.list_recordings(
        session=session,
        principal=principal,
        camera_id=camera_id,
        start=start,
        end=end,
        page=page,
    )
    return RecordingsRead(
        camera_id=camera_id,
        start=start,
        end=end,
        segments=[SegmentRead.model_validate(s) for s in segments],
        gaps=[GapRead.model_validate(g) for g in gaps],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get(
    "/recordings/{segment_id}/video",
    response_class=FileResponse,
    tags=["recordings"],
    responses={200: {"content": {"video/mp4": {}}, "description": "One masked MP4 segment."}},
)
def recording_video(
    segment_id: int,
    request: Request,
    session: SessionDep,
    principal: RecordingsDep,
    settings: SettingsDep,
) -> FileResponse:
    """Play one segment (range requests for seeking); each viewing is audit-logged."""
    # A player fetches a file in many ranges: log the viewing once, at its first byte.
    first = request.headers.get("range", "bytes=0-").replace(" ", "").startswith("bytes=0-")
    segment, path = service.segment_video(
        session=session,
        principal=principal,
        segment_id=segment_id,
        data_dir=settings.data_dir,
        audited=first,
    )
    return FileResponse(
        path,
        media_type="video/mp4",
        filename=f"camera{segment.camera_id}-{segment.start:%Y%m%dT%H%M%SZ}.mp4",
        content_disposition_type="inline",
        headers={"Cache-Control": "no-store"},
    )


# -- ONVIF --------------------------------------------------------------------------------------


@router.post("/onvif/probe", response_model=OnvifProbeRead, tags=["pipeline"])
async def onvif_probe(
    body: OnvifProbeRequest, session: SessionDep, principal: ProbeDep, settings: SettingsDep
) -> OnvifProbeRead:
    """Connect to an ONVIF device and list its profiles, so a camera can be registered with
    the right one (facility manager, admin). Returned URIs carry no credentials."""
    found, recommended = await service.probe_onvif(
        host=body.host,
        port=body.port,
        username=body.username,
        password=body.password.get_secret_value(),
        timeout_s=settings.pipeline.open_timeout_s * 2,
    )
    await run_in_threadpool(
        lambda: service.record_probe(
            session,
            principal=principal,
            host=body.host,
            port=body.port,
            profiles=len(found.profiles),
        )
    )
    return OnvifProbeRead(
        host=found.host,
        port=found.port,
        device=OnvifDeviceRead(
            manufacturer=found.device.manufacturer,
            model=found.device.model,
            firmware=found.device.firmware,
            serial=found.device.serial,
            hardware_id=found.device.hardware_id,
        ),
        profiles=[
            OnvifProfileRead(
                token=p.token,
                name=p.name,
                encoding=p.encoding,
                width=p.width,
                height=p.height,
                fps=p.fps,
                stream_uri=p.stream_uri,
                snapshot_uri=p.snapshot_uri,
            )
            for p in found.profiles
        ],
        recommended_profile_token=recommended,
    )


# -- metrics ------------------------------------------------------------------------------------


@metrics_router.get(
    "/metrics",
    response_class=Response,
    tags=["pipeline"],
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "Prometheus text"}},
)
def prometheus_metrics(request: Request, principal: AdminDep) -> Response:
    """Per-camera pipeline metrics and the retention metrics, Prometheus text format (admin:
    give the scraper an admin token)."""
    return Response(metrics.render(_supervisor(request)), media_type=metrics.CONTENT_TYPE)
