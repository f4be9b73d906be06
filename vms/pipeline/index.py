"""The recorder's view of the footage index, backed by `retention.service` in a worker's own
database engine (one committed transaction per segment)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable

from sqlalchemy.orm import Session, sessionmaker

from retention import service as retention_service
from vms.core import audit
from vms.core.db import session_scope
from vms.pipeline.gaps import GapAction, OpenGap
from vms.pipeline.recorder import SegmentInfo
from vms.pipeline.recovery import Recovery

logger = logging.getLogger(__name__)

# Run inside a write's transaction; raises to refuse it (the cluster's lease fencing token).
Fence = Callable[[Session], None]


class DbSegmentIndex:
    def __init__(
        self, factory: sessionmaker[Session], organisation_id: int, fence: Fence | None = None
    ) -> None:
        self._factory = factory
        self._organisation_id = organisation_id
        self._fence = fence

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The worker's sessions (its passthrough record is written through them too)."""
        return self._factory

    @property
    def organisation_id(self) -> int:
        return self._organisation_id

    def add(self, info: SegmentInfo) -> None:
        with session_scope(self._factory) as session:
            if self._fence is not None:
                self._fence(session)
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
                state=info.state,
                masked_by=info.masked_by,
            )

    def indexed_paths(self, camera_id: int, start: dt.datetime, end: dt.datetime) -> set[str]:
        with session_scope(self._factory) as session:
            return retention_service.segment_paths(
                session=session, camera_id=camera_id, start=start, end=end
            )

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


def write_gaps(
    sessions: sessionmaker[Session],
    camera_id: int,
    actions: Iterable[GapAction],
    fence: Fence | None = None,
) -> bool:
    """Write what the gap tracker decided; False (and logged) if the index is unreachable (or
    the fence refuses), so the tracker tries again next tick."""
    try:
        with session_scope(sessions) as session:
            if fence is not None:
                fence(session)
            for action in actions:
                if isinstance(action, OpenGap):
                    retention_service.open_gap(
                        session=session,
                        camera_id=camera_id,
                        start=action.start,
                        reason=action.reason,
                        detail=action.detail,
                    )
                    logger.info(
                        "camera %s: recording gap from %s (%s)",
                        camera_id,
                        action.start.isoformat(),
                        action.reason,
                    )
                else:
                    retention_service.close_gap(
                        session=session, camera_id=camera_id, end=action.end
                    )
    except Exception:
        logger.exception("camera %s: cannot write recording gap", camera_id)
        return False
    return True
