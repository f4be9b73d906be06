"""Passthrough cameras: whether one may run as passthrough, and the record of its verification.

A passthrough camera draws its plan's masks itself and its H.264 is recorded as it comes; the
camera's worker checks keyframes and writes where that stands here (`verifying`, `verified`,
`failed`, `unsupported`). The supervisor reads it on every registry poll: a camera whose check
failed, or whose device cannot draw the plan, records through transcoding (or is blocked, per
`VMS_PIPELINE__PASSTHROUGH_FALLBACK`) until the plan changes or someone asks to retry after
fixing the camera. The writers below are for the worker (trusted, no principal); people go
through `retry`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from masking import PlanError, parse_plan
from registry.models import (
    Camera,
    CameraMode,
    PassthroughState,
    PassthroughStatus,
    RecordingPath,
    SourceKind,
)
from registry.schemas import PassthroughRead
from vms.core import audit
from vms.core.auth import Principal
from vms.core.errors import Conflict, ErrorItem

# What a camera does when passthrough cannot be trusted: record through transcoding, or block.
Fallback = Literal["transcode", "block"]
RunsAs = Literal["passthrough", "transcode", "blocked"]

# A verified camera's `last_verified_at` is written at most this often (checks run every few
# seconds on every camera; the index proves each segment's check anyway, see the recorder).
VERIFIED_WRITE_S = 30.0


def check_camera(
    *, recording_path: Any, source_kind: Any, mode: Any, plan: dict[str, Any] | None
) -> list[ErrorItem]:
    """Why a camera with these values cannot use passthrough (empty: it can)."""
    if RecordingPath(recording_path) is not RecordingPath.passthrough:
        return []
    errors: list[ErrorItem] = []
    if SourceKind(source_kind) is not SourceKind.onvif:
        errors.append(
            ErrorItem(
                "passthrough_needs_onvif",
                "passthrough pushes the masks to the camera through ONVIF: the source must be "
                "an ONVIF device",
                "recording_path",
            )
        )
    if CameraMode(mode) is CameraMode.live:
        errors.append(
            ErrorItem(
                "passthrough_needs_recording",
                "passthrough is a way of recording; a live-only camera records nothing",
                "recording_path",
            )
        )
    if plan is not None:
        try:
            detect = parse_plan(plan).detect
        except PlanError:
            detect = None  # reported against mask_plan by the plan check
        if detect is not None:
            errors.append(
                ErrorItem(
                    "passthrough_needs_static_plan",
                    "a camera cannot anonymise what moves: plans with detectors (faces, people, "
                    "plates) stay on the transcode path",
                    "recording_path",
                )
            )
    return errors


def state_of(*, session: Session, camera_id: int) -> PassthroughState | None:
    return session.get(PassthroughState, camera_id)


def states_of(*, session: Session, camera_ids: Iterable[int]) -> dict[int, PassthroughState]:
    ids = sorted(set(camera_ids))
    if not ids:
        return {}
    rows = session.scalars(select(PassthroughState).where(PassthroughState.camera_id.in_(ids)))
    return {row.camera_id: row for row in rows}


def runs_as(
    camera: Camera, state: PassthroughState | None, plan_hash: str | None, fallback: Fallback
) -> RunsAs:
    """What the pipeline runs the camera as, given its verification record and the plan it
    would push (`plan_hash`: the effective plan's)."""
    if camera.recording_path != RecordingPath.passthrough:
        return "transcode"
    if state is None or state.plan_hash != plan_hash:
        return "passthrough"  # a new plan is pushed and verified afresh
    if state.status in (PassthroughStatus.failed, PassthroughStatus.unsupported):
        return "blocked" if fallback == "block" else "transcode"
    return "passthrough"


def to_read(state: PassthroughState | None) -> PassthroughRead:
    if state is None:
        return PassthroughRead()
    return PassthroughRead(
        status=state.status,
        plan_hash=state.plan_hash,
        verified_since=state.verified_since,
        last_verified_at=state.last_verified_at,
        checks_passed=state.checks_passed,
        failed_at=state.failed_at,
        reason=state.reason,
        detail=state.detail,
    )


# -- written by the camera's worker -----------------------------------------------------------


def _row(session: Session, camera_id: int) -> PassthroughState:
    row = session.get(PassthroughState, camera_id, with_for_update=True)
    if row is None:
        row = PassthroughState(camera_id=camera_id, status=PassthroughStatus.verifying)
        session.add(row)
    return row


def started(
    *,
    session: Session,
    camera_id: int,
    plan_hash: str | None,
    mask_tokens: Sequence[str],
    mask_color: Sequence[float],
) -> None:
    """Masks pushed for `plan_hash`; nothing is recorded until a keyframe passes the check."""
    row = _row(session, camera_id)
    if row.plan_hash != plan_hash or row.status is not PassthroughStatus.verified:
        row.verified_since = None
        row.checks_passed = 0
    row.status = PassthroughStatus.verifying
    row.plan_hash = plan_hash
    row.mask_tokens = list(mask_tokens)
    row.mask_color = [float(c) for c in mask_color]
    row.reason = row.detail = None
    session.flush()


def verified(
    *, session: Session, camera_id: int, plan_hash: str | None, at: dt.datetime, checks: int
) -> None:
    """Keyframes pass the check (`checks` since the last write)."""
    row = _row(session, camera_id)
    if row.status is not PassthroughStatus.verified or row.plan_hash != plan_hash:
        row.verified_since = at
        row.checks_passed = 0
    row.status = PassthroughStatus.verified
    row.plan_hash = plan_hash
    row.last_verified_at = at
    row.checks_passed = (row.checks_passed or 0) + checks
    row.reason = row.detail = None
    session.flush()


def failed(
    *,
    session: Session,
    organisation_id: int,
    camera_id: int,
    plan_hash: str | None,
    at: dt.datetime,
    status: PassthroughStatus,
    reason: str,
    detail: str,
    quarantined: int = 0,
) -> None:
    """The check failed (`status` failed) or the device cannot draw the plan (unsupported):
    the supervisor stops passthrough for this plan. Audited: the DPO must learn of it."""
    row = _row(session, camera_id)
    row.status = status
    row.plan_hash = plan_hash
    row.failed_at = at
    row.reason = reason[:64]
    row.detail = detail
    session.flush()
    audit.record(
        session,
        action=(
            "camera.passthrough_failed"
            if status is PassthroughStatus.failed
            else "camera.passthrough_unsupported"
        ),
        organisation_id=organisation_id,
        target_type="camera",
        target_id=camera_id,
        details={
            "reason": reason,
            "detail": detail,
            "plan_hash": plan_hash,
            "quarantined_segments": quarantined,
            "last_verified_at": row.last_verified_at.isoformat() if row.last_verified_at else None,
        },
    )


# -- people -----------------------------------------------------------------------------------


def retry(*, session: Session, actor: Principal, camera: Camera) -> None:
    """Forget a failure so the next worker pushes the masks and verifies again (after the
    camera was fixed). The caller has checked the actor may write the camera."""
    if camera.recording_path != RecordingPath.passthrough:
        raise Conflict(
            f"camera {camera.id} records through transcoding; set recording_path to passthrough",
            field="recording_path",
            code="not_passthrough",
        )
    row = session.get(PassthroughState, camera.id, with_for_update=True)
    before = row.status.value if row is not None else None
    if row is not None:
        session.delete(row)
        session.flush()
    audit.record(
        session,
        action="camera.passthrough_retry",
        actor=actor,
        organisation_id=camera.organisation_id,
        target_type="camera",
        target_id=camera.id,
        details={"from": before, "reason": row.reason if row is not None else None},
    )
