"""The police search for cameras near an incident, across organisations: owner, contact,
purpose, mode, retention and whether footage exists; never stream details."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from registry import service as registry_service
from registry.schemas import CameraMode, CameraStatus
from vms.core import audit
from vms.core.auth import Principal
from vms.core.db import utcnow
from vms.core.errors import InvalidInput
from vms.core.models import Role
from vms.core.pagination import PageParams
from vms.core.times import iso_seconds
from vms.export import sources
from vms.export.schemas import CameraNearPage, CameraNearRead, FootageRead, OwnerRead

MAX_RADIUS_M = 50_000.0
SEARCH_ROLES = (Role.police, Role.admin)


def search_near(
    *,
    session: Session,
    actor: Principal,
    lat: float,
    lon: float,
    radius_m: float,
    start: dt.datetime | None,
    end: dt.datetime | None,
    page: PageParams,
) -> CameraNearPage:
    """Registered cameras near a point, across organisations: owner, contact, purpose, mode,
    retention and (for a range) whether footage exists. Never stream details."""
    actor.require_role(*SEARCH_ROLES)
    if not -90 <= lat <= 90:
        raise InvalidInput("lat must be between -90 and 90", field="lat")
    if not -180 <= lon <= 180:
        raise InvalidInput("lon must be between -180 and 180", field="lon")
    if not 0 < radius_m <= MAX_RADIUS_M:
        raise InvalidInput(f"radius_m must be in (0, {MAX_RADIUS_M:.0f}]", field="radius_m")
    if (start is None) != (end is None):
        raise InvalidInput("give both start and end, or neither", field="end")
    if start is not None and end is not None and end <= start:
        raise InvalidInput("end must be after start", field="end")
    now = utcnow()
    hits = []
    for camera, distance in registry_service.cameras_near(
        session=session, lat=lat, lon=lon, radius_m=radius_m
    ):
        pol = registry_service.policy(session=session, camera_id=camera.id, at=now)
        if camera.status is CameraStatus.decommissioned and (
            camera.decommissioned_at is None
            or camera.decommissioned_at + dt.timedelta(hours=pol.max_retention_hours) <= now
        ):
            continue  # withdrawn and past retention: nothing left to ask for
        hits.append((camera, distance, pol.max_retention_hours))
    window = hits[page.offset : page.offset + page.limit]
    names: dict[int, str] = {}
    items = []
    for camera, distance, retention_hours in window:
        if camera.organisation_id not in names:
            names[camera.organisation_id] = sources.organisation_name(
                session=session, organisation_id=camera.organisation_id
            )
        footage = None
        if start is not None and end is not None:
            cutoff = now - dt.timedelta(hours=retention_hours)
            count = (
                0
                if camera.mode is CameraMode.live
                else sources.footage_count(
                    session=session, camera=camera, start=max(start, cutoff), end=end
                )
                if end > cutoff
                else 0
            )
            footage = FootageRead(
                start=start, end=end, segments=count, available=count > 0, retention_cutoff=cutoff
            )
        assert camera.lat is not None
        assert camera.lon is not None
        items.append(
            CameraNearRead(
                id=camera.id,
                name=camera.name,
                owner=OwnerRead(
                    organisation_id=camera.organisation_id,
                    organisation=names[camera.organisation_id],
                    contact_name=camera.owner_contact_name,
                    contact_email=camera.owner_contact_email,
                    contact_phone=camera.owner_contact_phone,
                ),
                address=camera.address,
                lat=camera.lat,
                lon=camera.lon,
                direction_deg=camera.direction_deg,
                distance_m=round(distance, 1),
                purpose=camera.purpose,
                purpose_category=camera.purpose_category,
                mode=camera.mode,
                status=camera.status,
                retention_hours=retention_hours,
                footage=footage,
            )
        )
    audit.record(
        session,
        action="export.camera_search",
        actor=actor,
        target_type="camera_search",
        details={
            "lat": lat,
            "lon": lon,
            "radius_m": radius_m,
            "start": iso_seconds(start) if start else None,
            "end": iso_seconds(end) if end else None,
            "hits": len(hits),
        },
    )
    return CameraNearPage(items=items, total=len(hits), limit=page.limit, offset=page.offset)
