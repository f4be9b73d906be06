"""The hash-chained audit log: append, verify, list.

Each entry's hash covers its own fields and the previous entry's hash, so editing or deleting
any row breaks every hash after it, and `verify_chain` names the first broken entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from vms.core.db import utcnow
from vms.core.models import AuditEntry

GENESIS = "0" * 64
# Arbitrary constant naming the PostgreSQL advisory lock that serialises appends.
_PG_LOCK_KEY = 0x5645_4D53


class Actor(Protocol):
    @property
    def user_id(self) -> int: ...

    @property
    def email(self) -> str: ...

    @property
    def organisation_id(self) -> int: ...


def _canonical(entry: AuditEntry) -> bytes:
    body = {
        "seq": entry.seq,
        "at": entry.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_id": entry.actor_id,
        "actor_email": entry.actor_email,
        "organisation_id": entry.organisation_id,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(_canonical(entry)).hexdigest()


def record(
    session: Session,
    *,
    action: str,
    actor: Actor | None = None,
    organisation_id: int | None = None,
    target_type: str | None = None,
    target_id: object | None = None,
    details: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (so it commits or rolls back with the act)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    # Round-trip through JSON now so the hash covers exactly what the database will return.
    clean_details = json.loads(json.dumps(details or {}, default=str))
    entry = AuditEntry(
        seq=seq,
        at=(at or utcnow()).astimezone(dt.UTC),
        actor_id=actor.user_id if actor else None,
        actor_email=actor.email if actor else None,
        organisation_id=(
            organisation_id
            if organisation_id is not None
            else (actor.organisation_id if actor else None)
        ),
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=clean_details,
        prev_hash=prev,
        hash="",
    )
    entry.hash = compute_hash(entry)
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: int | None = None
    problem: str | None = None


def verify_chain(session: Session, batch: int = 5000) -> ChainReport:
    """Walk the whole chain in order; stop at the first entry that does not hold."""
    prev_hash = GENESIS
    expected_seq = 1
    checked = 0
    for entry in _iter_entries(session, batch):
        if entry.seq != expected_seq:
            return ChainReport(
                False,
                checked,
                expected_seq,
                entry.id,
                f"entry seq {expected_seq} is missing (next present is seq {entry.seq}, "
                f"id {entry.id}): a row was deleted",
            )
        if entry.prev_hash != prev_hash:
            return ChainReport(
                False,
                checked,
                entry.seq,
                entry.id,
                f"entry seq {entry.seq} (id {entry.id}) does not link to the entry before it",
            )
        if compute_hash(entry) != entry.hash:
            return ChainReport(
                False,
                checked,
                entry.seq,
                entry.id,
                f"entry seq {entry.seq} (id {entry.id}, action {entry.action}) was modified: "
                "its content no longer matches its hash",
            )
        prev_hash = entry.hash
        expected_seq += 1
        checked += 1
    return ChainReport(True, checked)


def _iter_entries(session: Session, batch: int) -> Iterator[AuditEntry]:
    after = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def list_entries(
    session: Session,
    *,
    organisation_ids: set[int] | None,
    limit: int,
    offset: int,
    **filters: Any,
) -> tuple[list[AuditEntry], int]:
    """One page of entries, newest first, and the total that match."""
    stmt = list_query(organisation_ids=organisation_ids, **filters)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(AuditEntry.seq.desc()).limit(limit).offset(offset))
    return list(rows.all()), total


def list_query(
    *,
    organisation_ids: set[int] | None,
    action: str | None = None,
    actor_id: int | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Select[AuditEntry]:
    stmt = select(AuditEntry)
    if organisation_ids is not None:
        stmt = stmt.where(AuditEntry.organisation_id.in_(organisation_ids))
    if action:
        stmt = stmt.where(AuditEntry.action.like(action.replace("*", "%")))
    if actor_id is not None:
        stmt = stmt.where(AuditEntry.actor_id == actor_id)
    if target_type:
        stmt = stmt.where(AuditEntry.target_type == target_type)
    if target_id:
        stmt = stmt.where(AuditEntry.target_id == target_id)
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    if until:
        stmt = stmt.where(AuditEntry.at < until)
    return stmt
