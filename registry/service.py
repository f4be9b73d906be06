"""Registry services: cameras and sites. Other packages go through these functions, never
through the models."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from permits import service as permit_service
from permits.policy import CameraFacts, Policy, Window, permit_status, policy_for
from registry.models import Camera, CameraStatus
from vms.core.auth import Principal
from vms.core.crypto import SecretBox, join_credentials
from vms.core.db import utcnow
from vms.core.errors import NotFound


def get_camera(*, session: Session, camera_id: int) -> Camera | None:
    return session.get(Camera, camera_id)


def get_camera_or_raise(
    *, session: Session, camera_id: int, principal: Principal | None = None
) -> Camera:
    """The camera, if it exists and the principal (when given) may read its organisation."""
    camera = session.get(Camera, camera_id)
    if camera is None or (
        principal is not None and not principal.can_read_org(camera.organisation_id)
    ):
        raise NotFound("camera not found", field="camera_id")
    return camera


def parse_schedule(raw: list[dict[str, Any]] | None) -> tuple[Window, ...]:
    out: list[Window] = []
    for w in raw or []:
        out.append(
            Window(
                days=tuple(w["days"]),
                start=dt.time.fromisoformat(w["start"]),
                end=dt.time.fromisoformat(w["end"]),
            )
        )
    return tuple(out)


def camera_facts(*, session: Session, camera: Camera) -> CameraFacts:
    basis = (
        permit_service.basis_facts(session=session, basis_id=camera.legal_basis_id)
        if camera.legal_basis_id is not None
        else None
    )
    return CameraFacts(
        id=camera.id,
        mode=camera.mode.value,
        status=camera.status.value,
        retention_hours=camera.retention_hours,
        basis=basis,
        schedule=parse_schedule(camera.schedule),
        timezone=camera.timezone,
    )


def policy(*, session: Session, camera_id: int, at: dt.datetime | None = None) -> Policy:
    """`permits.policy_for` for a stored camera."""
    camera = get_camera_or_raise(session=session, camera_id=camera_id)
    return policy_for(camera_facts(session=session, camera=camera), at or utcnow())


def camera_permit_status(*, session: Session, camera: Camera, at: dt.datetime | None = None) -> str:
    return permit_status(camera_facts(session=session, camera=camera), at or utcnow())


def list_active_camera_ids(*, session: Session) -> list[int]:
    """Cameras the pipeline should consider (everything not decommissioned)."""
    return list(
        session.scalars(
            select(Camera.id)
            .where(Camera.status != CameraStatus.decommissioned)
            .order_by(Camera.id)
        )
    )


def source_credentials(*, camera: Camera, box: SecretBox) -> tuple[str | None, str | None]:
    if not camera.source_secret:
        return None, None
    data = json.loads(box.decrypt(camera.source_secret))
    return data.get("username"), data.get("password")


def stream_url(*, camera: Camera, box: SecretBox) -> str | None:
    """The RTSP URL with credentials, for the decoder only: never log or return it."""
    if camera.source_url is None:
        return None
    user, password = source_credentials(camera=camera, box=box)
    return join_credentials(camera.source_url, user, password)
