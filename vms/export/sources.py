"""What the export reads from the registry, permits and retention, in one place.

Police reach other organisations' cameras only through this workflow, while the retention and
registry services check readers by organisation. So footage is read here as a read-only principal
scoped to the camera's own organisation (`_reader_for`), after the export service has applied
its own rules. Two reads have no service function yet and query the registry's tables directly:
`cameras_in_box` and `mask_plans` (candidates for `registry.service`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from permits import service as permit_service
from registry import service as registry_service
from registry.models import Camera, MaskPlanVersion
from retention import service as retention_service
from retention.models import Gap, Segment
from retention.paths import resolve
from vms.core import accounts
from vms.core.auth import Principal
from vms.core.models import Role
from vms.core.pagination import PageParams

EARTH_RADIUS_M = 6_371_008.8
_PAGE = 1000


def _reader_for(organisation_id: int) -> Principal:
    # user_id 0 is no user: list_recordings only checks the organisation and writes no audit.
    return Principal(
        user_id=0, email="export-worker@vms", organisation_id=organisation_id, role=Role.operator
    )


def segments(
    *, session: Session, camera: Camera, start: dt.datetime, end: dt.datetime
) -> tuple[list[Segment], list[Gap]]:
    """Every playable segment overlapping [start, end) (oldest first) and the index's gaps."""
    reader = _reader_for(camera.organisation_id)
    out: list[Segment] = []
    gaps: list[Gap] = []
    offset = 0
    while True:
        page, gaps = retention_service.list_recordings(
            session=session,
            principal=reader,
            camera_id=camera.id,
            start=start,
            end=end,
            page=PageParams(limit=_PAGE, offset=offset),
        )
        out += page
        if len(page) < _PAGE:
            return out, gaps
        offset += _PAGE


def footage_count(*, session: Session, camera: Camera, start: dt.datetime, end: dt.datetime) -> int:
    return retention_service.count_recordings(
        session=session,
        principal=_reader_for(camera.organisation_id),
        camera_id=camera.id,
        start=start,
        end=end,
    )


def segment_file(data_dir: Path, segment: Segment) -> Path:
    return resolve(data_dir, segment.path)


def organisation_name(*, session: Session, organisation_id: int) -> str:
    return accounts.get_organisation_or_raise(session=session, organisation_id=organisation_id).name


def camera_snapshot(*, session: Session, camera: Camera) -> dict[str, Any]:
    """The registry record as the API shows it, minus the stream source, plus the owner's name."""
    read = registry_service.to_read(session=session, camera=camera)
    out = read.model_dump(mode="json", exclude={"source"})
    out["organisation"] = organisation_name(session=session, organisation_id=camera.organisation_id)
    return out


def basis_snapshot(*, session: Session, camera: Camera) -> dict[str, Any] | None:
    if camera.legal_basis_id is None:
        return None
    basis = permit_service.get_basis_or_raise(session=session, basis_id=camera.legal_basis_id)
    return permit_service.basis_read(session=session, basis=basis).model_dump(mode="json")


def mask_plans(
    *, session: Session, camera: Camera, hashes: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    """The plan behind each hash the segments cite (None if the registry no longer has it)."""
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(hashes)
    if camera.mask_plan_hash in out:
        out[camera.mask_plan_hash] = camera.mask_plan
    missing = [h for h, plan in out.items() if plan is None]
    if missing:
        rows = session.execute(
            select(MaskPlanVersion.plan_hash, MaskPlanVersion.plan).where(
                MaskPlanVersion.camera_id == camera.id, MaskPlanVersion.plan_hash.in_(missing)
            )
        )
        for digest, plan in rows:
            out[digest] = plan
    return out


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def cameras_in_box(
    *, session: Session, lat: float, lon: float, radius_m: float
) -> list[tuple[Camera, float]]:
    """Cameras within `radius_m` of (lat, lon), nearest first, across all organisations.

    A bounding box on the indexed lat/lon columns narrows the rows; the exact distance decides.
    """
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    coslat = max(math.cos(math.radians(lat)), 1e-6)
    dlon = min(180.0, math.degrees(radius_m / (EARTH_RADIUS_M * coslat)))
    stmt = select(Camera).where(
        Camera.lat.is_not(None),
        Camera.lon.is_not(None),
        Camera.lat.between(lat - dlat, lat + dlat),
    )
    lo, hi = lon - dlon, lon + dlon
    if lo < -180 or hi > 180:
        # The box crosses the antimeridian: take the whole band and let the distance decide.
        pass
    else:
        stmt = stmt.where(Camera.lon.between(lo, hi))
    hits = []
    for camera in session.scalars(stmt.order_by(Camera.id)):
        assert camera.lat is not None
        assert camera.lon is not None
        d = distance_m(lat, lon, camera.lat, camera.lon)
        if d <= radius_m:
            hits.append((camera, d))
    hits.sort(key=lambda x: (x[1], x[0].id))
    return hits
