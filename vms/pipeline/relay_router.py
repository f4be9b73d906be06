"""Routes for sharing-agreement recipients (issue 14): open a relayed stream session on a shared
camera (RTSP credentials valid for that session only) and end it; a shared camera's recordings
where the agreement shares them. Authorisation is sharing's service; the relay
(vms.pipeline.relay) serves the masked H.264, retention the footage."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import AwareDatetime

from retention import service as retention_service
from sharing import service as sharing_service
from sharing.schemas import StreamSessionRead
from vms.core.deps import PrincipalDep, SessionDep, SettingsDep
from vms.core.errors import NotFound
from vms.core.pagination import PageDep
from vms.pipeline import service
from vms.pipeline.relay import RelayError, RelayService
from vms.pipeline.schemas import RecordingsRead
from vms.pipeline.viewing import segment_response

router = APIRouter(prefix="/api/v1", tags=["sharing"])


def _relay(request: Request) -> RelayService | None:
    relay: RelayService | None = getattr(request.app.state, "relay", None)
    return relay


@router.post(
    "/shared-cameras/{camera_id}/stream-sessions",
    response_model=StreamSessionRead,
    status_code=status.HTTP_201_CREATED,
)
def open_stream_session(
    camera_id: int,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> StreamSessionRead:
    """Masked H.264 of a camera shared with your organisation, over RTSP from vms's relay
    (police and operators of the recipient, while an agreement in force covers the camera and
    the owner's policy allows live view). The password is shown once and opens this session's
    URL only; rights are re-checked every few seconds and the stream closes when they end.
    Start and end are audit-logged with the agreement."""
    grant = sharing_service.authorise_stream(
        session=session, principal=principal, camera_id=camera_id
    )
    relay = _relay(request)
    if relay is None or not relay.running:
        why = relay.error if relay is not None and relay.error else "it is not running here"
        raise service.Unavailable(f"the RTSP relay cannot serve: {why}", code="relay_not_running")
    cfg = settings.sharing
    row = sharing_service.open_session(
        session=session,
        principal=principal,
        grant=grant,
        protocol="rtsp",
        ttl=dt.timedelta(hours=cfg.session_ttl_hours),
    )
    try:
        password = relay.grant(
            key=row.key, session_id=row.id, camera_id=row.camera_id, principal=principal
        )
    except RelayError as exc:
        raise service.Unavailable(str(exc), code="relay_not_running") from exc
    return StreamSessionRead(
        id=row.id,
        camera_id=row.camera_id,
        agreement_id=row.agreement_id,
        protocol="rtsp",
        url=relay.url(row.key),
        username=row.key,
        password=password,
        started_at=row.started_at,
        expires_at=row.expires_at,
        recheck_s=cfg.recheck_s,
        idle_timeout_s=cfg.idle_timeout_s,
    )


@router.delete("/stream-sessions/{session_id}", response_model=StreamSessionRead)
def end_stream_session(
    session_id: int,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> StreamSessionRead:
    """End your stream session now (admin: anyone's); its connections close at once."""
    row = sharing_service.session_for_end(
        session=session, principal=principal, session_id=session_id
    )
    relay = _relay(request)
    usage = relay.withdraw(row.key) if relay is not None else None
    sharing_service.end_session(
        session=session,
        session_id=row.id,
        ended_by="admin" if principal.user_id != row.user_id else "client",
        viewed_seconds=usage.viewed_seconds if usage else row.viewed_seconds,
        plays=usage.plays if usage else row.plays,
        first_play_at=usage.first_play_at if usage else row.first_play_at,
    )
    cfg = settings.sharing
    return StreamSessionRead(
        id=row.id,
        camera_id=row.camera_id,
        agreement_id=row.agreement_id,
        protocol="rtsp",
        url=relay.url(row.key) if relay is not None and relay.port else f"/share/{row.key}",
        username=row.key,
        password=None,
        started_at=row.started_at,
        expires_at=row.expires_at,
        recheck_s=cfg.recheck_s,
        idle_timeout_s=cfg.idle_timeout_s,
        ended_at=row.ended_at,
        ended_by=row.ended_by,
    )


@router.get(
    "/shared-cameras/{camera_id}/recordings",
    response_model=RecordingsRead,
    tags=["sharing"],
)
def list_shared_recordings(
    camera_id: int,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    start: AwareDatetime | None = Query(None, description="default: 24 hours before end"),
    end: AwareDatetime | None = Query(None, description="default: now"),
) -> RecordingsRead:
    """A shared camera's segments and gaps in [start, end), where an agreement in force shares
    recordings; never footage from before the agreement began."""
    found = sharing_service.shared_recordings(
        session=session, principal=principal, camera_id=camera_id, start=start, end=end, page=page
    )
    return RecordingsRead.page_of(camera_id, found, page)


@router.get(
    "/shared-cameras/{camera_id}/recordings/{segment_id}/video",
    response_class=FileResponse,
    tags=["sharing"],
    responses={200: {"content": {"video/mp4": {}}, "description": "One masked MP4 segment."}},
)
def shared_recording_video(
    camera_id: int,
    segment_id: int,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> FileResponse:
    """Play one segment of a shared camera (range requests for seeking); audit-logged once per
    viewer and segment, with the agreement."""
    allowed = sharing_service.authorise_recordings(
        session=session, principal=principal, camera_id=camera_id
    )
    segment = retention_service.playable_segment(session=session, segment_id=segment_id)
    if segment is None or segment.camera_id != camera_id or segment.start < allowed.since:
        raise NotFound("recording not found", field="segment_id")
    path = retention_service.resolve_segment_file(settings.data_dir, segment)
    if not path.is_file():
        raise NotFound("the recording's file is missing (the retention check reports it)")
    if request.app.state.viewings.starts(principal.user_id, segment.id):
        sharing_service.record_recording_view(
            session=session,
            principal=principal,
            allowed=allowed,
            details={
                "segment_id": segment.id,
                "start": segment.start.isoformat(),
                "end": segment.end.isoformat(),
                "sha256": segment.sha256,
            },
        )
    return segment_response(segment, path)
