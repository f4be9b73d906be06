"""The hash-chained audit log: append, verify, list.

Each entry's hash covers its own fields and the previous entry's hash, so editing or deleting
any row breaks every hash after it, and `verify_chain` names the first broken entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select, insert, select, text
from sqlalchemy.orm import Session

from vms.core.db import count_rows, utcnow
from vms.core.models import AuditEntry, Role

READER_ROLES = (Role.admin, Role.dpo)

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


@dataclass(frozen=True)
class NewEntry:
    """One entry to append with `record_many`."""

    action: str
    organisation_id: int | None = None
    target_type: str | None = None
    target_id: object | None = None
    details: dict[str, Any] | None = None
    actor: Actor | None = None


def _lock_and_head(session: Session) -> tuple[int, str]:
    """Serialise appenders and return the next sequence number and the current head hash."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    session.flush()
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (last[0] + 1, last[1]) if last else (1, GENESIS)


def _build(item: NewEntry, *, seq: int, prev: str, at: dt.datetime) -> AuditEntry:
    actor = item.actor
    # Round-trip through JSON now so the hash covers exactly what the database will return.
    clean_details = json.loads(json.dumps(item.details or {}, default=str))
    entry = AuditEntry(
        seq=seq,
        at=at.astimezone(dt.UTC),
        actor_id=actor.user_id if actor else None,
        actor_email=actor.email if actor else None,
        organisation_id=(
            item.organisation_id
            if item.organisation_id is not None
            else (actor.organisation_id if actor else None)
        ),
        action=item.action,
        target_type=item.target_type,
        target_id=None if item.target_id is None else str(item.target_id),
        details=clean_details,
        prev_hash=prev,
        hash="",
    )
    entry.hash = compute_hash(entry)
    return entry


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
    seq, prev = _lock_and_head(session)
    item = NewEntry(action, organisation_id, target_type, target_id, details, actor)
    entry = _build(item, seq=seq, prev=prev, at=at or utcnow())
    session.add(entry)
    session.flush()
    return entry


_COLUMNS = (
    "seq",
    "at",
    "actor_id",
    "actor_email",
    "organisation_id",
    "action",
    "target_type",
    "target_id",
    "details",
    "prev_hash",
    "hash",
)


def record_many(
    session: Session, items: Sequence[NewEntry], *, at: dt.datetime | None = None
) -> None:
    """Append a batch in one INSERT: the chain head is read once, not once per entry (a
    retention sweep writes thousands of receipts). Same hashes as `record`."""
    if not items:
        return
    seq, prev = _lock_and_head(session)
    when = at or utcnow()
    rows: list[dict[str, Any]] = []
    for item in items:
        entry = _build(item, seq=seq, prev=prev, at=when)
        rows.append({c: getattr(entry, c) for c in _COLUMNS})
        prev, seq = entry.hash, seq + 1
    # Core executemany: no ids needed back, which lets every backend batch the rows.
    session.execute(insert(AuditEntry), rows)


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
    total = count_rows(session, stmt)
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


def read_page(
    session: Session,
    principal: Any,
    *,
    limit: int,
    offset: int,
    **filters: Any,
) -> tuple[list[AuditEntry], int]:
    """One page for a reader of the audit log: admin sees all, a DPO their organisations."""
    principal.require_role(*READER_ROLES)
    return list_entries(
        session,
        organisation_ids=principal.readable_org_ids(),
        limit=limit,
        offset=offset,
        **filters,
    )


def verify_for(
    session: Session, principal: Any, expect: tuple[int, str] | None = None
) -> ChainReport:
    """Walk the whole chain (admin, and DPOs: checking the log's integrity is their job; the
    answer names no other organisation's content); with `expect` (seq, hash) the chain must
    also still hold that anchored head."""
    principal.require_role(*READER_ROLES)
    report = verify_chain(session)
    if report.ok and expect is not None:
        problem = check_anchor(session, *expect)
        if problem is not None:
            return ChainReport(False, report.checked, expect[0], None, problem)
    return report


# -- anchoring the head ---------------------------------------------------------------------
#
# The chain proves that no entry was edited or removed in the middle; deleting the newest entries
# leaves a shorter chain that still verifies. Anchoring fixes that: the head (sequence number
# and hash) is signed with the installation key and kept outside the database (by the DPO, in
# their report archive); `verify_chain(expect=...)` then refuses a chain that no longer contains
# it.


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    at: dt.datetime

    def statement(self) -> bytes:
        """The exact bytes that are signed: `openssl pkeyutl -verify -rawin` checks them."""
        return (
            f"vms audit log head\nseq: {self.seq}\nhash: {self.hash}\n"
            f"at: {self.at.astimezone(dt.UTC).isoformat()}\n"
        ).encode()


def head(session: Session) -> Head | None:
    """The newest entry of the chain (None for an empty log)."""
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.hash, AuditEntry.at)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    ).first()
    return Head(row[0], row[1], row[2]) if row else None


def check_anchor(session: Session, seq: int, digest: str) -> str | None:
    """Why the chain does not hold an anchored head (None if it does): its entry `seq` must
    still be there with hash `digest`."""
    row = session.execute(select(AuditEntry.hash).where(AuditEntry.seq == seq)).first()
    if row is None:
        last = head(session)
        newest = last.seq if last else 0
        return (
            f"the anchored entry seq {seq} is gone (the log ends at seq {newest}): entries "
            "were deleted from the end"
        )
    if row[0] != digest:
        return f"entry seq {seq} does not have the anchored hash: the log was rewritten"
    return None
