"""The DPO's retention report: per camera, what may be kept, what is kept, and what went.

Rendered as JSON (the schema), CSV (one row per camera) or a printable HTML page.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from registry import service as registry_service
from retention import receipts
from retention.footage import CameraRules, cameras_with_footage, not_held, past_retention
from retention.holds import active_windows
from retention.models import LegalHold, RetentionSweep, Segment, SegmentState
from retention.rules import HoldWindow, cutoff_for, kept_window
from retention.schemas import AuditAnchor, CameraRetentionRead, HoldSummary, RetentionReportRead
from vms.core import audit
from vms.core.auth import Principal
from vms.core.csvout import to_csv as csv_text
from vms.core.db import utcnow
from vms.core.errors import InvalidInput
from vms.core.models import Role

DEFAULT_PERIOD = dt.timedelta(days=30)
REPORT_ROLES = (Role.admin, Role.dpo)


def _source(camera: Any, facts: Any, allowed: int) -> str:
    basis = facts.basis
    if camera.mode.value == "live":
        return "live-only camera: nothing may be stored"
    if basis is None:
        return f"camera setting ({camera.retention_hours} h); no legal basis linked"
    where = f"legal basis {basis.id} ({basis.kind}, {basis.status})"
    if basis.max_retention_hours < camera.retention_hours:
        return f"{where} caps it at {basis.max_retention_hours} h"
    return f"camera setting ({allowed} h), within the {basis.max_retention_hours} h of {where}"


def _overlaps(holds: list[HoldWindow]) -> Any:
    return or_(*[(Segment.start < h.end) & (Segment.end > h.start) for h in holds])


def build_report(
    *,
    session: Session,
    principal: Principal | None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    organisation_id: int | None = None,
    camera_id: int | None = None,
    now: dt.datetime | None = None,
) -> RetentionReportRead:
    """The report over [since, until) (default: the last 30 days) for the cameras the principal
    may read (`principal` None: the console, every camera)."""
    now = now or utcnow()
    until = until or now
    since = since or until - DEFAULT_PERIOD
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInput("since and until must carry a timezone", field="since")
    if since >= until:
        raise InvalidInput("since must be before until", field="since")
    if principal is not None:
        principal.require_role(*REPORT_ROLES)
        if organisation_id is not None:
            principal.require_read(organisation_id, "organisation")
        if camera_id is not None:
            registry_service.get_camera_or_raise(
                session=session, camera_id=camera_id, principal=principal
            )

    holds = active_windows(session=session, now=now)
    ids = (
        set(cameras_with_footage(session))
        | set(registry_service.list_active_camera_ids(session=session))
        | set(holds)
    )
    cameras = []
    for cid in sorted(ids):
        camera = registry_service.get_camera(session=session, camera_id=cid)
        if camera is None:
            continue
        if principal is not None and not principal.can_read_org(camera.organisation_id):
            continue
        if organisation_id is not None and camera.organisation_id != organisation_id:
            continue
        if camera_id is not None and cid != camera_id:
            continue
        cameras.append(camera)

    wanted = [c.id for c in cameras]
    stats: dict[int, Any] = {}
    if wanted:
        rows = session.execute(
            select(
                Segment.camera_id,
                func.count(Segment.id),
                func.coalesce(func.sum(Segment.size_bytes), 0),
                func.min(Segment.start),
                func.max(Segment.end),
                func.sum(case((Segment.state == SegmentState.missing, 1), else_=0)),
                func.sum(case((Segment.state == SegmentState.quarantined, 1), else_=0)),
            )
            .where(Segment.camera_id.in_(wanted), Segment.state != SegmentState.deleting)
            .group_by(Segment.camera_id)
        )
        stats = {r[0]: r for r in rows}

    deletions: dict[tuple[int, str], int] = defaultdict(int)
    if wanted:
        stmt = audit.list_query(
            organisation_ids=None,
            action=receipts.ANY_ACTION,
            target_type=receipts.TARGET,
            since=since,
            until=until,
        ).subquery()
        for target, action, n in session.execute(
            select(stmt.c.target_id, stmt.c.action, func.count()).group_by(
                stmt.c.target_id, stmt.c.action
            )
        ):
            if target is not None and target.isdigit():
                deletions[(int(target), action)] += int(n)

    last = session.scalars(
        select(RetentionSweep)
        .where(RetentionSweep.finished_at.is_not(None), RetentionSweep.dry_run.is_(False))
        .order_by(RetentionSweep.id.desc())
        .limit(1)
    ).first()
    last_at = last.finished_at if last else None
    shortened = {
        int(k): dt.datetime.fromisoformat(v)
        for k, v in ((last.shortened if last else {}) or {}).items()
    }

    out: list[CameraRetentionRead] = []
    for camera in cameras:
        cid = camera.id
        facts = registry_service.camera_facts(session=session, camera=camera)
        policy = registry_service.policy(session=session, camera_id=cid, at=now)
        rules = CameraRules(
            cid,
            camera.organisation_id,
            policy,
            cutoff_for(policy, now),
            (),
            kept_window(policy, now),
        )
        windows = holds.get(cid, [])
        st = stats.get(cid)
        summaries: list[HoldSummary] = []
        held_n = held_bytes = 0
        if windows and st is not None:
            base = select(
                func.count(Segment.id), func.coalesce(func.sum(Segment.size_bytes), 0)
            ).where(Segment.camera_id == cid, Segment.state != SegmentState.deleting)
            held_n, held_bytes = session.execute(base.where(_overlaps(windows))).one()
            for w in windows:
                n, size = session.execute(base.where(_overlaps([w]))).one()
                hold = session.get(LegalHold, w.hold_id)
                summaries.append(
                    HoldSummary(
                        hold_id=w.hold_id,
                        case_number=w.case_number,
                        reason=hold.reason if hold else "",
                        start=w.start,
                        end=w.end,
                        expires_at=w.expires_at,
                        segments=int(n),
                        size_bytes=int(size),
                    )
                )
        elif windows:
            for w in windows:
                hold = session.get(LegalHold, w.hold_id)
                summaries.append(
                    HoldSummary(
                        hold_id=w.hold_id,
                        case_number=w.case_number,
                        reason=hold.reason if hold else "",
                        start=w.start,
                        end=w.end,
                        expires_at=w.expires_at,
                        segments=0,
                        size_bytes=0,
                    )
                )
        violations, oldest_violation = 0, None
        if st is not None:
            violations, oldest_violation = session.execute(
                select(func.count(Segment.id), func.min(Segment.start)).where(
                    Segment.camera_id == cid,
                    *past_retention(rules),
                    Segment.state != SegmentState.deleting,
                    *not_held(windows),
                )
            ).one()
        by_rule = {a: n for (c, a), n in deletions.items() if c == cid}
        out.append(
            CameraRetentionRead(
                camera_id=cid,
                camera_name=camera.name,
                organisation_id=camera.organisation_id,
                status=camera.status.value,
                configured_retention_hours=camera.retention_hours,
                allowed_retention_hours=policy.max_retention_hours,
                allowed_source=_source(camera, facts, policy.max_retention_hours),
                legal_basis_id=policy.basis_id,
                oldest_footage=st[3] if st else None,
                newest_footage=st[4] if st else None,
                segments=int(st[1]) if st else 0,
                size_bytes=int(st[2]) if st else 0,
                missing_segments=int(st[5] or 0) if st else 0,
                quarantined_segments=int(st[6] or 0) if st else 0,
                held_segments=int(held_n),
                held_bytes=int(held_bytes),
                holds=summaries,
                last_sweep_at=last_at,
                deletions_in_period=sum(by_rule.values()),
                pressure_deletions_in_period=by_rule.get(receipts.action_for("disk_pressure"), 0),
                shortened_by_disk_pressure_until=(
                    shortened[cid] if cid in shortened and shortened[cid] > now else None
                ),
                violations=int(violations),
                oldest_violation=oldest_violation,
            )
        )
    return RetentionReportRead(
        generated_at=now,
        period_start=since,
        period_end=until,
        last_sweep_at=last_at,
        cameras=out,
        total_violations=sum(c.violations for c in out),
        total_deletions=sum(c.deletions_in_period for c in out),
        audit_head=(
            AuditAnchor(seq=head.seq, hash=head.hash, at=head.at)
            if (head := audit.head(session)) is not None
            else None
        ),
    )


CSV_COLUMNS = (
    "camera_id",
    "camera_name",
    "organisation_id",
    "status",
    "configured_retention_hours",
    "allowed_retention_hours",
    "allowed_source",
    "oldest_footage",
    "newest_footage",
    "segments",
    "size_bytes",
    "missing_segments",
    "held_segments",
    "holds",
    "last_sweep_at",
    "deletions_in_period",
    "pressure_deletions_in_period",
    "shortened_by_disk_pressure_until",
    "violations",
    "oldest_violation",
)


def _holds_text(c: CameraRetentionRead) -> str:
    return "; ".join(
        f"{h.case_number}: {h.reason} ({h.segments} segments, {h.start.isoformat()} to "
        f"{h.end.isoformat()})"
        for h in c.holds
    )


def to_csv(report: RetentionReportRead) -> str:
    rows = []
    for c in report.cameras:
        row = c.model_dump()
        row["holds"] = _holds_text(c)
        rows.append([row[k] for k in CSV_COLUMNS])
    return csv_text(CSV_COLUMNS, rows)


def _t(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def to_html(report: RetentionReportRead) -> str:
    """A self-contained page meant for printing (no scripts, no external resources)."""
    e = html.escape
    rows = []
    for c in report.cameras:
        holds = "<br>".join(
            f"{e(h.case_number)}: {e(h.reason)} ({h.segments} segments, {_t(h.start)} to "
            f"{_t(h.end)}{', expires ' + _t(h.expires_at) if h.expires_at else ''})"
            for h in c.holds
        )
        shortened = (
            f"<br><strong>shortened by disk pressure until {_t(c.shortened_by_disk_pressure_until)}"
            "</strong>"
            if c.shortened_by_disk_pressure_until
            else ""
        )
        cls = ' class="violation"' if c.violations else ""
        rows.append(
            f"<tr{cls}><td>{c.camera_id}</td><td>{e(c.camera_name)}</td>"
            f"<td>{c.configured_retention_hours} h</td>"
            f"<td>{c.allowed_retention_hours} h<br><small>{e(c.allowed_source)}</small>{shortened}"
            f"</td><td>{_t(c.oldest_footage)}</td><td>{c.segments}</td>"
            f"<td>{c.held_segments}<br><small>{holds}</small></td>"
            f"<td>{c.deletions_in_period}</td><td>{c.violations}"
            f"{'<br><small>oldest ' + _t(c.oldest_violation) + '</small>' if c.violations else ''}"
            "</td></tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="9">No cameras.</td></tr>'
    verdict = (
        f'<p class="violation"><strong>{report.total_violations} segments are older than '
        "allowed and not under hold.</strong></p>"
        if report.total_violations
        else "<p>No footage is older than allowed.</p>"
    )
    head = report.audit_head
    anchor = (
        f"<p><small>Audit log head at {_t(head.at)}: <code>{head.seq}:{e(head.hash)}</code>. Keep "
        "this page: <code>vms audit verify --expect-head</code> with it shows whether entries "
        "were removed since.</small></p>"
        if head is not None
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Retention report</title>
<style>
body {{ font: 11pt/1.4 sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #999; padding: 4px 6px; vertical-align: top; text-align: left; }}
th {{ background: #eee; }}
tr.violation td, p.violation {{ color: #a00; }}
@media print {{ body {{ margin: 0; }} tr {{ page-break-inside: avoid; }} }}
</style></head><body>
<h1>Retention report</h1>
<p>Period {_t(report.period_start)} to {_t(report.period_end)}; generated {_t(report.generated_at)};
last sweep {_t(report.last_sweep_at)}; {report.total_deletions} deletions in the period, each with a
receipt in the audit log.</p>
{verdict}
<table><thead><tr><th>Camera</th><th>Name</th><th>Configured</th><th>Allowed (source)</th>
<th>Oldest footage</th><th>Segments</th><th>Under hold</th><th>Deletions</th><th>Violations</th>
</tr></thead><tbody>
{body}
</tbody></table>
{anchor}
</body></html>
"""
