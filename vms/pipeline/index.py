"""The recorder's view of the footage index, backed by `retention.service` in a worker's own
database engine (one committed transaction per segment)."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session, sessionmaker

from retention import service as retention_service
from vms.core import audit
from vms.core.auth import Principal
from vms.core.db import session_scope
from vms.core.models import Role
from vms.core.pagination import PageParams
from vms.pipeline.recorder import Recovery, SegmentInfo

logger = logging.getLogger(__name__)


def pipeline_principal(organisation_id: int) -> Principal:
    """Who the pipeline reads the index as: an operator of the camera's own organisation.

    Used only for reads scoped to one camera; every write is attributed to the system (no actor).
    """
    return Principal(
        user_id=0, email="pipeline@vms.local", organisation_id=organisation_id, role=Role.operator
    )


class DbSegmentIndex:
    def __init__(self, factory: sessionmaker[Session], organisation_id: int) -> None:
        self._factory = factory
        self._organisation_id = organisation_id

    def add(self, info: SegmentInfo) -> None:
        with session_scope(self._factory) as session:
            retention_service.add_segment(
                session=session,
                camera_id=info.camera_id,
                start=info.start,
                end=info.end,
                path=info.path,
                size_bytes=info.size_bytes,
                sha256=info.sha256,
                mask_plan_hash=info.mask_plan_hash,
                codec=info.codec,
                width=info.width,
                height=info.height,
                frames=info.frames,
            )

    def indexed_paths(self, camera_id: int, start: dt.datetime, end: dt.datetime) -> set[str]:
        paths: set[str] = set()
        offset = 0
        with session_scope(self._factory) as session:
            while True:
                segments, _gaps = retention_service.list_recordings(
                    session=session,
                    principal=pipeline_principal(self._organisation_id),
                    camera_id=camera_id,
                    start=start,
                    end=end,
                    page=PageParams(limit=500, offset=offset),
                )
                paths.update(s.path for s in segments)
                if len(segments) < 500:
                    return paths
                offset += 500

    def record_recovery(self, camera_id: int, recovery: Recovery) -> None:
        """Leave an audit trail of what crash recovery discarded or indexed."""
        if not (recovery.discarded or recovery.indexed):
            return
        with session_scope(self._factory) as session:
            audit.record(
                session,
                action="recording.recovered",
                organisation_id=self._organisation_id,
                target_type="camera",
                target_id=camera_id,
                details={
                    "discarded_partial": [
                        {"path": path, "size_bytes": size} for path, size in recovery.discarded
                    ],
                    "indexed": [
                        {"path": i.path, "sha256": i.sha256, "start": i.start.isoformat()}
                        for i in recovery.indexed
                    ],
                },
            )
