"""Routes: camera status, live view (MJPEG, snapshot), mask preview, recordings, ONVIF probe,
and the Prometheus `/metrics`. The API process never decodes video: frames come from the
camera workers through shared memory (see vms.pipeline.live).

Over 500 lines on purpose: it is the pipeline's one router, mounted once in `vms.api` (the
order of `ROUTERS` matters); the routes stay thin (they parse and call `vms.pipeline.service`
and `preview`), and the MJPEG loop with its re-checks and audit is the one long piece.
"""

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

from vms.core import browser
from vms.core.auth import Principal, authenticate_token
from vms.core.db import end_transaction
from vms.core.deps import PrincipalDep, SecretBoxDep, SessionDep, SettingsDep
from vms.core.errors import Unauthorized
from vms.core.pagination import PageDep
from vms.pipeline import metrics, preview, service
from vms.pipeline.backend import PipelineBackend
from vms.pipeline.live import PREVIEW_MASKED, PREVIEW_RAW, LiveImage
from vms.pipeline.schemas import (
    CameraStatusRead,
    LiveTicketRead,
    MaskPreviewRequest,
    OnvifDeviceRead,
    OnvifProbeRead,
    OnvifProbeRequest,
    OnvifProfileRead,
    PassthroughStatusRead,
    RecordingsRead,
    Resolution,
)
from vms.pipeline.slots import CameraStatusView
from vms.pipeline.status import CameraState
from vms.pipeline.viewing import segment_response

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1")
metrics_router = APIRouter()

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
            used=request.app.state.used_tickets,
        )
    elif (token := browser.session_token(request)) is not None:
        # The web interface's session cookie (GET only: no CSRF token needed).
        principal = authenticate_token(session, token)
    else:
        raise Unauthorized("missing bearer token or live-view ticket")
    return principal


ViewerDep = Annotated[Principal, Depends(_viewer)]

BOUNDARY = "vmsframe"
# A frame older than this is not shown: the camera stopped, and a still image would mislead.
MAX_FRAME_AGE_S = 5.0
SNAPSHOT_WAIT_S = 5.0
PREVIEW_WAIT_S = 5.0


def _supervisor(request: Request) -> PipelineBackend | None:
    sup: PipelineBackend | None = getattr(request.app.state, "pipeline", None)
    return sup if sup is not None and sup.running else None


def _require_supervisor(request: Request) -> PipelineBackend:
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
        live_stream=view.live_stream,
        last_frame_at=view.last_frame_at,
        last_error=view.last_error,
        updated_at=view.updated_at,
        recording_path=view.recording_path,
        passthrough=(
            PassthroughStatusRead(
                verified_at=view.passthrough_verified_at,
                checks=view.passthrough_checks,
                failed=view.passthrough_failed,
                quarantined_segments=view.quarantined_segments,
            )
            if view.recording_path == "passthrough" or view.passthrough_failed
            else None
        ),
        node=view.node,
    )


@router.get("/cameras/{camera_id}/status", response_model=CameraStatusRead, tags=["pipeline"])
def camera_status(
    camera_id: int, request: Request, session: SessionDep, principal: PrincipalDep
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
    sup: PipelineBackend,
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
    checked = started
    sup.add_viewer(camera_id)
    try:
        seq = 0
        while True:
            if not sup.live_allowed(camera_id):
                ended_by = "policy"
                break
            if time.monotonic() - checked >= service.LIVE_RECHECK_S:
                # The right to watch is re-checked while watching: a revoked token, a
                # deactivated user or a changed role ends the view within seconds.
                checked = time.monotonic()
                why = await run_in_threadpool(
                    service.live_still_allowed, sessions, principal, camera_id
                )
                if why is not None:
                    ended_by = why
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
            # Polled at twice the rate frames are published: polling at the rate itself drifts
            # against the worker's schedule and skips a frame every few.
            await asyncio.sleep(0.5 / fps)
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
    camera_id: int, request: Request, session: SessionDep, principal: PrincipalDep
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


async def _fresh_frame(sup: PipelineBackend, camera_id: int) -> LiveImage | None:
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
    await run_in_threadpool(end_transaction, session)
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
    principal: PrincipalDep,
    settings: SettingsDep,
    box: SecretBoxDep,
) -> Response:
    """The camera's mask plan drawn over its current picture: over the raw frame for facility
    managers and admins when the policy allows live view, otherwise over the masked frame.
    Audit-logged."""

    allowed = await run_in_threadpool(
        lambda: service.authorise_preview(
            session=session, principal=principal, camera_id=camera_id, settings=settings, box=box
        )
    )
    # Waiting for a frame must not hold the database (on SQLite, its write lock).
    await run_in_threadpool(end_transaction, session)
    camera, raw = allowed.camera, allowed.raw
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
            preview.run,
            preview.stored_plan_job(allowed.grab),
            settings.pipeline.open_timeout_s * 3,
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


@router.post(
    "/cameras/{camera_id}/mask-preview",
    response_class=Response,
    tags=["pipeline"],
    responses={200: {"content": {"image/png": {}}, "description": "The plan tried on a frame."}},
)
async def mask_preview_plan(
    camera_id: int,
    body: MaskPreviewRequest,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    box: SecretBoxDep,
) -> Response:
    """An unsaved mask plan tried on the camera's current picture, before it is saved: over the
    raw frame for facility managers and admins when the policy allows live view, otherwise over
    the frame masked by the stored plan (never more than the live view shows). Audit-logged."""
    plan, unsaved_hash = preview.validate_plan(body.plan)
    allowed = await run_in_threadpool(
        lambda: service.authorise_preview(
            session=session, principal=principal, camera_id=camera_id, settings=settings, box=box
        )
    )
    await run_in_threadpool(end_transaction, session)
    job = preview.PreviewJob(
        allowed.grab,
        apply=plan if body.apply else None,
        overlay=plan if body.overlay else None,
        mask_overlay=False,
    )
    png = await run_in_threadpool(preview.run, job, settings.pipeline.open_timeout_s * 3)
    await run_in_threadpool(
        lambda: service.record_view(
            session,
            action="camera.mask_preview",
            principal=principal,
            camera=allowed.camera,
            details={
                "raw_frame": allowed.raw,
                "frame_from": "source",
                "unsaved_plan_hash": unsaved_hash,
            },
        )
    )
    # The editor tells its user whether they look at the raw or the already masked picture.
    headers = {"Cache-Control": "no-store", "X-Raw-Frame": "1" if allowed.raw else "0"}
    return Response(png, media_type="image/png", headers=headers)


# -- recordings ---------------------------------------------------------------------------------


@router.get("/recordings", response_model=RecordingsRead, tags=["recordings"])
def list_recordings(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    camera_id: int = Query(..., ge=1),
    start: AwareDatetime | None = Query(None, description="default: 24 hours before end"),
    end: AwareDatetime | None = Query(None, description="default: now"),
) -> RecordingsRead:
    """A camera's segments and gaps in [start, end) (operator, DPO, facility manager, admin of
    organisations they can read; the police get footage only through exports)."""
    found = service.list_recordings(
        session=session,
        principal=principal,
        camera_id=camera_id,
        start=start,
        end=end,
        page=page,
    )
    return RecordingsRead.page_of(camera_id, found, page)


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
    principal: PrincipalDep,
    settings: SettingsDep,
) -> FileResponse:
    """Play one segment (range requests for seeking); each viewing is audit-logged."""
    segment, path = service.segment_video(
        session=session,
        principal=principal,
        segment_id=segment_id,
        data_dir=settings.data_dir,
        viewings=request.app.state.viewings,
    )
    return segment_response(segment, path)


# -- ONVIF --------------------------------------------------------------------------------------


@router.post("/onvif/probe", response_model=OnvifProbeRead, tags=["pipeline"])
async def onvif_probe(
    body: OnvifProbeRequest,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> OnvifProbeRead:
    """Connect to an ONVIF device and list its profiles, so a camera can be registered with
    the right one (facility manager, admin). Returned URIs carry no credentials."""
    found, recommended, recommended_live = await service.probe_onvif(
        principal=principal,
        host=body.host,
        port=body.port,
        username=body.username,
        password=body.password.get_secret_value(),
        settings=settings,
        session=session,
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
        recommended_live_profile_token=recommended_live,
    )


# -- metrics ------------------------------------------------------------------------------------


@metrics_router.get(
    "/metrics",
    response_class=Response,
    tags=["pipeline"],
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "Prometheus text"}},
)
def prometheus_metrics(request: Request, principal: PrincipalDep) -> Response:
    """Per-camera pipeline metrics and the retention metrics, Prometheus text format (admin:
    give the scraper an admin token)."""
    service.authorise_metrics(principal)
    return Response(metrics.render(_supervisor(request)), media_type=metrics.CONTENT_TYPE)
