"""Building a package for an approved request: claim it, gather what the manifest states,
cut and sign (`vms.export.package`), record the outcome; expiry of old packages.

Runs in the export worker without a transaction open during the (long) cut: progress and the
outcome are written in short ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from collections.abc import Callable
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from registry import service as registry_service
from vms.core import signing
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import session_scope, utcnow
from vms.core.errors import Conflict, NotFound
from vms.core.models import User
from vms.core.times import iso_seconds
from vms.export import manifest as mf
from vms.export import package, sources
from vms.export.models import ExportRequest, ExportStatus
from vms.export.schemas import ExportRead
from vms.export.service import (
    DOWNLOADABLE,
    EXPORTS_DIR,
    audit_request,
    camera_label,
    delete_package,
    signing_key,
    to_read,
)

logger = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


class BuildStopped(Exception):
    """The worker is shutting down: the build is abandoned and the request queued again."""


def _user_info(session: Session, user_id: int | None) -> dict[str, Any] | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None:
        return {"user_id": user_id}
    return {
        "user_id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "organisation_id": user.organisation_id,
        "organisation": sources.organisation_name(
            session=session, organisation_id=user.organisation_id
        ),
    }


def _package_input(
    session: Session, settings: Settings, req: ExportRequest
) -> package.PackageInput:
    cameras = []
    for cid in req.camera_ids:
        camera = registry_service.get_camera_or_raise(session=session, camera_id=cid)
        segs, gaps = sources.segments(session=session, camera=camera, start=req.start, end=req.end)
        inputs = []
        for s in segs:
            try:
                path = sources.segment_file(settings.data_dir, s)
            except ValueError as exc:
                raise package.PackageError(f"segment {s.id} has an invalid path") from exc
            inputs.append(
                package.SegmentInput(
                    id=s.id,
                    path=path,
                    start=s.start,
                    end=s.end,
                    sha256=s.sha256,
                    size_bytes=s.size_bytes,
                    mask_plan_hash=s.mask_plan_hash,
                    masked_by=s.masked_by.value,
                )
            )
        if not inputs:
            raise package.PackageError(f"{camera_label(camera)} has no footage left in the range")
        hashes = sorted({s.mask_plan_hash for s in segs if s.mask_plan_hash})
        cameras.append(
            package.CameraInput(
                camera_id=camera.id,
                name=camera.name,
                registry=sources.camera_snapshot(session=session, camera=camera),
                legal_basis=sources.basis_snapshot(session=session, camera=camera),
                mask_plans=registry_service.mask_plans(
                    session=session, camera=camera, hashes=hashes
                ),
                segments=inputs,
                recorded_gaps=[{"start": g.start, "end": g.end, "reason": g.reason} for g in gaps],
                withheld=[
                    {"id": w.id, "start": w.start, "end": w.end, "reason": "quarantined"}
                    for w in sources.withheld(
                        session=session, camera=camera, start=req.start, end=req.end
                    )
                ],
            )
        )
    requester = _user_info(session, req.requester_id) or {}
    requester |= {"officer": req.officer, "unit": req.unit}
    return package.PackageInput(
        export_id=req.id,
        case_number=req.case_number,
        legal_ground={"category": req.legal_ground_category.value, "text": req.legal_ground_text},
        reason=req.reason,
        requested_by=requester,
        approved_by=(_user_info(session, req.decided_by) or {}) | {"note": req.decision_note},
        requested_at=req.created_at,
        approved_at=req.decided_at,
        start=req.start,
        end=req.end,
        cameras=cameras,
    )


def claim(*, session_factory: SessionFactory, export_id: int) -> bool:
    """Move an approved request to `building`; False if someone else did (or it is not approved)."""
    with session_scope(session_factory) as session:
        result = session.execute(
            update(ExportRequest)
            .where(ExportRequest.id == export_id, ExportRequest.status == ExportStatus.approved)
            .values(status=ExportStatus.building, progress=0, build_started_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if not getattr(result, "rowcount", 0):
            return False
        req = session.get(ExportRequest, export_id)
        assert req is not None
        audit_request(session, req, "export.build_started", None)
    return True


def next_approved(*, session_factory: SessionFactory) -> int | None:
    with session_scope(session_factory) as session:
        return session.scalar(
            select(ExportRequest.id)
            .where(ExportRequest.status == ExportStatus.approved)
            .order_by(ExportRequest.decided_at, ExportRequest.id)
            .limit(1)
        )


def build_package(
    *,
    session_factory: SessionFactory,
    settings: Settings,
    export_id: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> ExportRead:
    """Claim an approved request, build and sign its package, record the outcome.

    Runs without a transaction open during the (long) cut; progress is written in short ones.
    """
    if not claim(session_factory=session_factory, export_id=export_id):
        with session_scope(session_factory) as session:
            req = session.get(ExportRequest, export_id)
            if req is None:
                raise NotFound("export request not found", field="export_id")
            raise Conflict(f"the request is {req.status.value}, not approved", code="status")
    box = SecretBox(settings.secret_key_bytes())
    try:
        with session_scope(session_factory) as session:
            req = session.get(ExportRequest, export_id)
            assert req is not None
            inp = _package_input(session, settings, req)
            key = signing_key(session=session, settings=settings, box=box)
            name = package.package_name(req.id, req.case_number)
        last = [0]

        def progress(pct: int) -> None:
            if should_stop():
                raise BuildStopped
            if pct - last[0] < 5 and pct < 100:
                return
            last[0] = pct
            with session_scope(session_factory) as s:
                s.execute(
                    update(ExportRequest)
                    .where(ExportRequest.id == export_id)
                    .values(progress=min(pct, 99))
                    .execution_options(synchronize_session=False)
                )

        out = settings.data_dir / EXPORTS_DIR / name
        built = package.build(inp, out_path=out, key=key, progress=progress)
    except BuildStopped:
        _requeue(session_factory, export_id, "the server stopped during the build")
        raise
    except (package.PackageError, signing.SigningKeyError) as exc:
        return _failed(session_factory, export_id, str(exc))
    except Exception as exc:
        logger.exception("building export %s failed", export_id)
        return _failed(
            session_factory, export_id, f"internal error while building ({type(exc).__name__})"
        )
    manifest_sha = hashlib.sha256(mf.canonical_json(built.manifest)).hexdigest()
    with session_scope(session_factory) as session:
        req = session.get(ExportRequest, export_id)
        assert req is not None
        now = utcnow()
        req.status = ExportStatus.ready
        req.progress = 100
        req.built_at = now
        req.package_path = f"{EXPORTS_DIR}/{name}"
        req.package_sha256 = built.sha256
        req.package_size = built.size_bytes
        req.manifest_sha256 = manifest_sha
        req.expires_at = now + dt.timedelta(hours=settings.export_ttl_hours)
        session.flush()
        audit_request(
            session,
            req,
            "export.built",
            None,
            {
                "package_sha256": built.sha256,
                "manifest_sha256": manifest_sha,
                "size_bytes": built.size_bytes,
                "expires_at": iso_seconds(req.expires_at),
                "signing_key": built.manifest["signing_key"]["fingerprint_sha256"],
                "cameras": [
                    {
                        "camera_id": c["camera_id"],
                        "frames": c["video"]["frames"],
                        "method": c["video"]["method"],
                        "segments": [s["id"] for s in c["segments"]],
                        "gaps": len(c["gaps"]),
                        "mask_plan_hashes": [p["hash"] for p in c["mask_plans"]],
                    }
                    for c in built.manifest["cameras"]
                ],
                "warnings": built.warnings,
            },
        )
        logger.info("export %s built: %s bytes", export_id, built.size_bytes)
        return to_read(req)


def _failed(session_factory: SessionFactory, export_id: int, reason: str) -> ExportRead:
    logger.warning("export %s failed: %s", export_id, reason)
    with session_scope(session_factory) as session:
        req = session.get(ExportRequest, export_id)
        assert req is not None
        req.status = ExportStatus.failed
        req.failure_reason = reason
        session.flush()
        audit_request(session, req, "export.build_failed", None, {"reason": reason})
        return to_read(req)


def _requeue(session_factory: SessionFactory, export_id: int, reason: str) -> None:
    with session_scope(session_factory) as session:
        req = session.get(ExportRequest, export_id)
        if req is None or req.status is not ExportStatus.building:
            return
        req.status = ExportStatus.approved
        req.progress = 0
        session.flush()
        audit_request(session, req, "export.build_requeued", None, {"reason": reason})


def requeue_interrupted(*, session_factory: SessionFactory) -> int:
    """Builds a previous run left half-done go back to `approved` (their temp files are gone)."""
    with session_scope(session_factory) as session:
        stuck = list(
            session.scalars(
                select(ExportRequest.id).where(ExportRequest.status == ExportStatus.building)
            )
        )
    for export_id in stuck:
        _requeue(session_factory, export_id, "the server restarted during the build")
    return len(stuck)


def expire_packages(
    *, session_factory: SessionFactory, settings: Settings, now: dt.datetime | None = None
) -> int:
    """Delete packages past `export_ttl_hours`; the requests become `expired` (holds stay until
    the request is closed)."""
    now = now or utcnow()
    with session_scope(session_factory) as session:
        due = list(
            session.scalars(
                select(ExportRequest).where(
                    ExportRequest.status.in_(DOWNLOADABLE),
                    or_(ExportRequest.expires_at.is_(None), ExportRequest.expires_at <= now),
                )
            )
        )
        for req in due:
            delete_package(settings, req)
            req.status = ExportStatus.expired
            session.flush()
            audit_request(
                session, req, "export.expired", None, {"package_sha256": req.package_sha256}
            )
        return len(due)


def cleanup_partial_builds(settings: Settings) -> None:
    """Temp folders of builds interrupted by a crash."""
    root = settings.data_dir / EXPORTS_DIR
    if root.is_dir():
        for tmp in root.glob(".build-*"):
            shutil.rmtree(tmp, ignore_errors=True)
