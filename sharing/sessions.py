"""Recipients' stream sessions: open one (audited), re-check it while it is open
(`session_still_allowed`), end it once with the time viewed (audited), and close those a
previous run left open."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import service as registry_service
from sharing.agreements import effective
from sharing.coverage import agreements_covering
from sharing.grants import StreamGrant
from sharing.models import SharingAgreement, SharingSession
from sharing.roles import SESSION_ENDERS, VIEWER_ROLES
from vms.core import audit
from vms.core.auth import Principal, authenticate_token_id
from vms.core.db import utcnow
from vms.core.errors import NotFound, Unauthorized


@dataclass(frozen=True, slots=True)
class _SessionActor:
    """The recipient user a session belongs to, as the audit log names actors."""

    user_id: int
    email: str
    organisation_id: int


def _actor_of(row: SharingSession) -> _SessionActor:
    return _SessionActor(row.user_id, row.user_email, row.recipient_organisation_id)


def open_session(
    *,
    session: Session,
    principal: Principal,
    grant: StreamGrant,
    protocol: str,
    ttl: dt.timedelta,
) -> SharingSession:
    """Record a recipient session (audited `sharing.session.start`); the caller hands out the
    credentials once this is stored."""
    now = utcnow()
    row = SharingSession(
        key=secrets.token_hex(12),
        agreement_id=grant.agreement_id,
        camera_id=grant.camera_id,
        owner_organisation_id=grant.owner_organisation_id,
        recipient_organisation_id=grant.recipient_organisation_id,
        user_id=principal.user_id,
        user_email=principal.email,
        token_id=principal.token_id,
        protocol=protocol,
        started_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        action="sharing.session.start",
        actor=principal,
        organisation_id=grant.owner_organisation_id,
        target_type="camera",
        target_id=grant.camera_id,
        details={
            "session_id": row.id,
            "session": row.key,
            "agreement_id": grant.agreement_id,
            "camera_id": grant.camera_id,
            "recipient_organisation_id": grant.recipient_organisation_id,
            "protocol": protocol,
            "from": now.isoformat(),
            "expires_at": row.expires_at.isoformat(),
        },
        at=now,
    )
    return row


def get_session_row(*, session: Session, session_id: int) -> SharingSession | None:
    return session.get(SharingSession, session_id)


def session_for_end(*, session: Session, principal: Principal, session_id: int) -> SharingSession:
    """A session its own user (or admin) may end (404 for anyone else's)."""
    principal.require_role(*SESSION_ENDERS)
    row = session.get(SharingSession, session_id)
    if row is None or (not principal.is_admin and row.user_id != principal.user_id):
        raise NotFound("stream session not found", field="session_id")
    return row


def session_still_allowed(
    *, session: Session, session_id: int, principal: Principal, at: dt.datetime | None = None
) -> str | None:
    """Why an open session must end now, or None. Asked every `recheck_s` for every open
    session: the session ended or expired, the user's token revoked or expired, the user
    deactivated or their role or organisation changed, the agreement revoked, ended or past
    its end date, the camera no longer covered, or the owner's policy no longer allowing live
    view."""
    at = at or utcnow()
    row = session.get(SharingSession, session_id)
    if row is None:
        return "missing"  # not committed yet, or its opening failed
    if row.ended_at is not None:
        return "ended"
    if at >= row.expires_at:
        return "expired"
    try:
        if principal.token_id is None:
            return "token_invalid"
        current = authenticate_token_id(session, principal.token_id)
    except Unauthorized:
        return "token_invalid"
    if (current.role, current.organisation_id) != (principal.role, principal.organisation_id):
        return "rights_changed"
    if current.role not in VIEWER_ROLES:
        return "rights_changed"
    agreement = session.get(SharingAgreement, row.agreement_id)
    if agreement is None:
        return "agreement_revoked"
    state = effective(agreement, at)
    if state == "revoked":
        return "agreement_revoked"
    if state != "active":
        return "agreement_expired"
    camera = registry_service.get_camera(session=session, camera_id=row.camera_id)
    if camera is None or agreement.id not in {
        a.id
        for a in agreements_covering(
            session=session,
            camera=camera,
            recipient_organisation_id=current.organisation_id,
            at=at,
        )
    }:
        return "not_shared"
    if not registry_service.policy(session=session, camera_id=camera.id, at=at).may_view_live:
        return "policy"
    return None


def end_session(
    *,
    session: Session,
    session_id: int,
    ended_by: str,
    viewed_seconds: float,
    plays: int,
    first_play_at: dt.datetime | None,
    at: dt.datetime | None = None,
) -> SharingSession | None:
    """Close a session (once; audited `sharing.session.end` with from/until and time viewed)."""
    row = session.get(SharingSession, session_id)
    if row is None or row.ended_at is not None:
        return row
    at = at or utcnow()
    row.ended_at = at
    row.ended_by = ended_by
    row.viewed_seconds = round(max(row.viewed_seconds, viewed_seconds), 3)
    row.plays = max(row.plays, plays)
    row.first_play_at = row.first_play_at or first_play_at
    session.flush()
    audit.record(
        session,
        action="sharing.session.end",
        actor=_actor_of(row),
        organisation_id=row.owner_organisation_id,
        target_type="camera",
        target_id=row.camera_id,
        details={
            "session_id": row.id,
            "session": row.key,
            "agreement_id": row.agreement_id,
            "camera_id": row.camera_id,
            "recipient_organisation_id": row.recipient_organisation_id,
            "protocol": row.protocol,
            "from": row.started_at.isoformat(),
            "until": at.isoformat(),
            "first_play_at": row.first_play_at.isoformat() if row.first_play_at else None,
            "viewed_s": row.viewed_seconds,
            "plays": row.plays,
            "ended_by": ended_by,
        },
        at=at,
    )
    return row


def record_play(*, session: Session, session_id: int, at: dt.datetime) -> None:
    """The first time a recipient's client actually plays the stream."""
    row = session.get(SharingSession, session_id)
    if row is not None and row.first_play_at is None:
        row.first_play_at = at
        session.flush()


def close_sessions_left_open(*, session: Session, at: dt.datetime) -> int:
    """At start-up: sessions of a previous run cannot be open any more (the relay went with
    it); end them, audited."""
    rows = list(session.scalars(select(SharingSession).where(SharingSession.ended_at.is_(None))))
    for row in rows:
        end_session(
            session=session,
            session_id=row.id,
            ended_by="server_restart",
            viewed_seconds=row.viewed_seconds,
            plays=row.plays,
            first_play_at=row.first_play_at,
            at=at,
        )
    return len(rows)
