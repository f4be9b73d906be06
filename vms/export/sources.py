"""What the export reads from the registry, permits and retention, in one place.

Police reach other organisations' cameras only through this workflow, after the export service
has applied its own rules (who asks, for which range, within retention); so footage is read
here through retention's trusted readers, not as any user.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from permits import service as permit_service
from registry import service as registry_service
from retention import service as retention_service
from retention.paths import resolve
from vms.core import accounts

if TYPE_CHECKING:
    from registry.models import Camera
    from retention.models import Gap, Segment


def segments(
    *, session: Session, camera: Camera, start: dt.datetime, end: dt.datetime
) -> tuple[list[Segment], list[Gap]]:
    """Every playable segment overlapping [start, end) (oldest first) and the index's gaps."""
    return (
        retention_service.camera_segments(
            session=session, camera_id=camera.id, start=start, end=end
        ),
        retention_service.camera_gaps(session=session, camera_id=camera.id, start=start, end=end),
    )


def withheld(
    *, session: Session, camera: Camera, start: dt.datetime, end: dt.datetime
) -> list[Segment]:
    """Quarantined segments in the range: recorded, not covered by a passing mask check."""
    return retention_service.camera_withheld(
        session=session, camera_id=camera.id, start=start, end=end
    )


def footage_count(*, session: Session, camera: Camera, start: dt.datetime, end: dt.datetime) -> int:
    return retention_service.count_camera_segments(
        session=session, camera_id=camera.id, start=start, end=end
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
