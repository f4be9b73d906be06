"""Deletion receipts: one hash-chained audit entry per deleted file.

A receipt is written in the same transaction that marks the segment "deleting", before the file
is unlinked, so a deleted file always has exactly one receipt (see retention.sweep). Receipts are
filed under the camera (target_type "camera", target_id = camera id) so that "every deletion of
camera X since T" is an indexed query on the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import service as registry_service
from retention.rules import RULE_RETENTION
from vms.core import audit
from vms.core.auth import Principal
from vms.core.db import count_rows
from vms.core.errors import Forbidden
from vms.core.models import AuditEntry, Role

ACTION = "retention.deleted"
# Every deletion's action starts with ACTION; the suffix names the rule, so that the report can
# count deletions by rule without reading JSON: retention.deleted (normal retention),
# retention.deleted.disk_pressure, retention.deleted.orphan_past_retention,
# retention.deleted.stale_partial.
ANY_ACTION = ACTION + "*"
TARGET = "camera"


def action_for(rule: str) -> str:
    kind = rule.split(" ", 1)[0]
    return ACTION if kind == RULE_RETENTION else f"{ACTION}.{kind}"


@dataclass(frozen=True)
class Receipt:
    seq: int
    at: dt.datetime
    camera_id: int
    segment_id: int | None
    start: dt.datetime | None
    end: dt.datetime | None
    sha256: str | None
    size_bytes: int | None
    path: str
    rule: str
    reason: str
    index_state: str | None
    entry_hash: str


@dataclass(frozen=True)
class ReceiptData:
    """What one receipt says about one deleted file."""

    organisation_id: int
    camera_id: int
    segment_id: int | None
    start: dt.datetime | None
    end: dt.datetime | None
    sha256: str | None
    size_bytes: int | None
    path: str
    rule: str
    reason: str
    index_state: str | None

    def details(self) -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "camera_id": self.camera_id,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "path": self.path,
            "rule": self.rule,
            "reason": self.reason,
            "index_state": self.index_state,
        }


def write(session: Session, *, at: dt.datetime, **fields: Any) -> AuditEntry:
    """One receipt through `audit.record` (the check's orphans: a few at a time)."""
    data = ReceiptData(**fields)
    return audit.record(
        session,
        action=action_for(data.rule),
        organisation_id=data.organisation_id,
        target_type=TARGET,
        target_id=data.camera_id,
        details=data.details(),
        at=at,
    )


def write_many(session: Session, items: Sequence[ReceiptData], *, at: dt.datetime) -> None:
    """A batch of receipts appended to the audit chain in one INSERT."""
    audit.record_many(
        session,
        [
            audit.NewEntry(
                action=action_for(item.rule),
                organisation_id=item.organisation_id,
                target_type=TARGET,
                target_id=item.camera_id,
                details=item.details(),
            )
            for item in items
        ],
        at=at,
    )


def _dt(value: object) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


def from_entry(entry: AuditEntry) -> Receipt:
    d = entry.details
    return Receipt(
        seq=entry.seq,
        at=entry.at,
        camera_id=int(d.get("camera_id") or entry.target_id or 0),
        segment_id=d.get("segment_id"),
        start=_dt(d.get("start")),
        end=_dt(d.get("end")),
        sha256=d.get("sha256"),
        size_bytes=d.get("size_bytes"),
        path=str(d.get("path", "")),
        rule=str(d.get("rule", "")),
        reason=str(d.get("reason", "")),
        index_state=d.get("index_state"),
        entry_hash=entry.hash,
    )


def list_receipts(
    *,
    session: Session,
    principal: Principal | None,
    camera_id: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> tuple[list[Receipt], int]:
    """Deletion receipts, oldest first, and how many match. `principal` None is the operator at
    the console (CLI)."""
    orgs: set[int] | None = None
    if principal is not None:
        if principal.role not in (Role.admin, Role.dpo):
            raise Forbidden("this action needs one of the roles: admin, dpo")
        orgs = principal.readable_org_ids()
        if camera_id is not None:
            registry_service.get_camera_or_raise(
                session=session, camera_id=camera_id, principal=principal
            )
    stmt = audit.list_query(
        organisation_ids=orgs,
        action=ANY_ACTION,
        target_type=TARGET,
        target_id=str(camera_id) if camera_id is not None else None,
        since=since,
        until=until,
    )
    total = count_rows(session, stmt)
    rows = session.scalars(stmt.order_by(AuditEntry.seq).limit(limit).offset(offset))
    return [from_entry(e) for e in rows], int(total)


def already_receipted(
    session: Session, *, camera_id: int, path: str, sha256: str | None, since: dt.datetime
) -> bool:
    """Whether a receipt for this file exists already (orphan clean-up retried after a crash)."""
    rows = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action.like(ACTION + "%"),
            AuditEntry.target_type == TARGET,
            AuditEntry.target_id == str(camera_id),
            AuditEntry.at >= since,
        )
    )
    return any(e.details.get("path") == path and e.details.get("sha256") == sha256 for e in rows)
