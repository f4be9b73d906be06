"""The retention sweep: with the reconciliation check (`retention.reconcile`), the only code
that deletes footage.

Over 500 lines on purpose: the scheduled pass and the disk-pressure pass share the crash-safe
`_delete` below, and its order is only convincing when read in one place.

Crash-safe order, per batch of segments:

1. one transaction writes a receipt (hash-chained audit entry) for each segment and marks its
   row `deleting`, then commits;
2. the files are unlinked (a file already gone is fine);
3. one transaction deletes the rows still marked `deleting`.

A crash before 1 commits leaves nothing behind (no receipt, nothing deleted); a crash after it
leaves rows marked `deleting` that the next run finishes first (unlink if the file is still there,
delete the row) without writing a second receipt. So every file the sweep removes has exactly one
receipt, and the index never lists a file the sweep removed as playable.

A killed process cannot undo an unlink the kernel has done, so folders are not fsynced per batch
(on this class of disk that costs more than the rest of the sweep). After a power cut an unlink
may be lost while its row's deletion survived: the file comes back as an orphan, and
`check --repair` deletes it again without a second receipt (it matches the first by path and
SHA-256).

Cost: due segments are found per camera through the (camera_id, end) index, and the cameras with
footage through a skip scan of the same index, so a sweep reads the due rows (plus one probe per
camera), not the whole index.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from retention import metrics, receipts
from retention.footage import (
    CameraRules,
    camera_rules,
    cameras_with_footage,
    due_rows,
    past_retention,
    prune_empty,
)
from retention.holds import active_windows, expire_holds, lock_holds
from retention.locking import exclusive
from retention.models import RetentionSweep, Segment, SegmentState
from retention.paths import (
    RECORDINGS,
    resolve,
)
from retention.rules import (
    RULE_DISK_PRESSURE,
    due_for_deletion,
    rule_text,
)
from vms.core import audit
from vms.core.db import utcnow

logger = logging.getLogger(__name__)

_PRESSURE_PROBE = 64


@dataclass(frozen=True)
class SweepHooks:
    """Test hooks: called at the points where a crash matters (the crash test kills there)."""

    before_delete: Callable[[Sequence[int]], None] | None = None
    before_receipts_commit: Callable[[Sequence[int]], None] | None = None
    after_receipts_commit: Callable[[Sequence[int]], None] | None = None
    after_unlink: Callable[[int], None] | None = None
    after_batch: Callable[[Sequence[int]], None] | None = None


@dataclass
class CameraSweep:
    camera_id: int
    retention_hours: int
    cutoff: dt.datetime
    deleted: int = 0
    deleted_bytes: int = 0
    pressure_deleted: int = 0
    held_past_retention: int = 0


@dataclass(frozen=True)
class Planned:
    segment_id: int
    camera_id: int
    start: dt.datetime
    end: dt.datetime
    size_bytes: int
    rule: str


@dataclass
class SweepReport:
    started_at: dt.datetime
    dry_run: bool
    finished_at: dt.datetime | None = None
    deleted: int = 0
    deleted_bytes: int = 0
    recovered: int = 0
    pressure_deleted: int = 0
    held_past_retention: int = 0
    unlink_errors: int = 0
    expired_holds: list[int] = field(default_factory=list)
    cameras: dict[int, CameraSweep] = field(default_factory=dict)
    planned: list[Planned] = field(default_factory=list)
    disk_free_bytes: int | None = None
    disk_floor_bytes: int = 0
    shortened: dict[int, dt.datetime] = field(default_factory=dict)
    skipped: str | None = None
    interrupted: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class _Doomed:
    row: Any  # a row of _COLUMNS
    rules: CameraRules
    rule: str
    reason: str


def sweep(
    *,
    session: Session,
    data_dir: Path,
    now: dt.datetime | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
    disk_free_floor_bytes: int = 0,
    free_bytes: Callable[[Path], int] | None = None,
    hooks: SweepHooks | None = None,
    should_continue: Callable[[], bool] | None = None,
) -> SweepReport:
    """Delete every segment past its camera's retention and not held; relieve disk pressure.

    The sweep owns its transactions: it commits `session` after every batch (see the module
    docstring for the order). `dry_run` changes nothing and lists what would go.
    `should_continue` is asked between batches: a server shutting down stops cleanly there.
    """
    now = now or utcnow()
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    with exclusive(data_dir) as locked:
        if not locked:
            report = SweepReport(started_at=now, dry_run=dry_run)
            report.skipped = "another sweep or repair is running on this data dir"
            logger.info("retention sweep skipped: %s", report.skipped)
            return report
        worker = _Sweep(
            session=session,
            data_dir=data_dir,
            now=now,
            batch_size=batch_size,
            dry_run=dry_run,
            floor=disk_free_floor_bytes,
            free_bytes=free_bytes or (lambda p: shutil.disk_usage(p).free),
            hooks=hooks or SweepHooks(),
            should_continue=should_continue or (lambda: True),
        )
        return worker.run()


class _Sweep:
    def __init__(
        self,
        *,
        session: Session,
        data_dir: Path,
        now: dt.datetime,
        batch_size: int,
        dry_run: bool,
        floor: int,
        free_bytes: Callable[[Path], int],
        hooks: SweepHooks,
        should_continue: Callable[[], bool],
    ) -> None:
        self.should_continue = should_continue
        self.session = session
        self.data_dir = data_dir
        self.now = now
        self.batch = batch_size
        self.dry_run = dry_run
        self.floor = floor
        self.free_bytes = free_bytes
        self.hooks = hooks
        self.report = SweepReport(started_at=now, dry_run=dry_run, disk_floor_bytes=floor)
        self.rules: dict[int, CameraRules] = {}
        self.pending: list[_Doomed] = []
        self.pinned: dict[int, Any] = {}

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> SweepReport:
        clock = time.monotonic()
        row: RetentionSweep | None = None
        previous = self._previous_shortened()
        if not self.dry_run:
            row = RetentionSweep(started_at=self.now, dry_run=False)
            self.session.add(row)
            self.session.commit()
            self.report.recovered = self._finish_interrupted()
            self.report.expired_holds = [
                h.id for h in expire_holds(session=self.session, now=self.now)
            ]
            self.session.commit()
        else:
            self.report.recovered = int(
                self.session.scalar(
                    select(func.count(Segment.id)).where(Segment.state == SegmentState.deleting)
                )
                or 0
            )
        holds = active_windows(session=self.session, now=self.now)
        for camera_id in cameras_with_footage(self.session):
            if not self.should_continue():
                self.report.interrupted = True
                break
            rules = camera_rules(self.session, camera_id, self.now, holds, self.pinned)
            self.rules[camera_id] = rules
            self.report.cameras[camera_id] = CameraSweep(
                camera_id, rules.policy.max_retention_hours, rules.cutoff
            )
            self._sweep_camera(rules)
        self._flush()
        self._relieve_pressure(previous)
        # "As of": the instant the rules were applied at (the injected clock in tests).
        self.report.finished_at = self.now
        self.report.seconds = time.monotonic() - clock
        if row is not None:
            # An interrupted run does not count as "the last sweep" in the DPO report.
            row.finished_at = None if self.report.interrupted else self.now
            row.deleted = self.report.deleted
            row.deleted_bytes = self.report.deleted_bytes
            row.pressure_deleted = self.report.pressure_deleted
            row.recovered = self.report.recovered
            row.shortened = {str(k): v.isoformat() for k, v in self.report.shortened.items()}
            self.session.commit()
            self._publish()
        logger.info(
            "retention sweep%s: %s deleted (%s bytes), %s recovered, %s under hold, %.2fs",
            " (dry run)" if self.dry_run else "",
            self.report.deleted if not self.dry_run else len(self.report.planned),
            self.report.deleted_bytes,
            self.report.recovered,
            self.report.held_past_retention,
            self.report.seconds,
        )
        return self.report

    def _sweep_camera(self, rules: CameraRules) -> None:
        stats = self.report.cameras[rules.camera_id]
        rule = rule_text(rules.policy)
        after: tuple[dt.datetime, int] | None = None
        while self.should_continue():
            rows = due_rows(self.session, rules, limit=self.batch, after=after)
            # Reading holds no lock into the deletion (on SQLite every transaction is the write
            # lock): holds placed meanwhile are seen when the batch is deleted.
            self.session.commit()
            if not rows:
                break
            after = (rows[-1].end, rows[-1].id)
            due = [r for r in rows if due_for_deletion(r, rules.policy, rules.holds, self.now).due]
            if self.dry_run:
                self.report.planned.extend(
                    Planned(r.id, r.camera_id, r.start, r.end, r.size_bytes, rule) for r in due
                )
                stats.deleted += len(due)
                stats.deleted_bytes += sum(r.size_bytes for r in due)
            else:
                self.pending.extend(_Doomed(r, rules, rule, "older than retention") for r in due)
                if len(self.pending) >= self.batch:
                    self._flush()
            if len(rows) < self.batch:
                break
        if rules.holds:
            held = self.session.scalar(
                select(func.count(Segment.id)).where(
                    Segment.camera_id == rules.camera_id,
                    *past_retention(rules),
                    Segment.state != SegmentState.deleting,
                    or_(*[(Segment.start < h.end) & (Segment.end > h.start) for h in rules.holds]),
                )
            )
            stats.held_past_retention = int(held or 0)
            self.report.held_past_retention += stats.held_past_retention

    # -- deleting -----------------------------------------------------------------------------

    def _flush(self) -> None:
        """Delete what is pending, `batch` segments (of any cameras) per transaction."""
        while self.pending:
            chunk, self.pending = self.pending[: self.batch], self.pending[self.batch :]
            self._delete(chunk)

    def _delete(self, doomed: Sequence[_Doomed]) -> set[int]:
        """Receipts + mark (commit), unlink, forget (commit). Returns the ids deleted.

        The holds are read again in this batch's own transaction, after taking the lock a new
        hold also takes: a hold (or an export request) committed since the sweep read its rows
        wins, whenever it came."""
        if self.hooks.before_delete:
            self.hooks.before_delete([d.row.id for d in doomed])
        lock_holds(self.session)
        held = active_windows(
            session=self.session, now=self.now, camera_ids={d.row.camera_id for d in doomed}
        )
        doomed = [
            d
            for d in doomed
            if not any(h.covers(d.row.start, d.row.end) for h in held.get(d.row.camera_id, ()))
        ]
        if not doomed:
            self.session.commit()
            return set()
        ids = [d.row.id for d in doomed]
        marked = self.session.execute(
            update(Segment)
            .where(Segment.id.in_(ids), Segment.state != SegmentState.deleting)
            .values(state=SegmentState.deleting)
            .execution_options(synchronize_session=False)
        )
        if int(getattr(marked, "rowcount", -1)) != len(ids):
            # Someone else changed these rows since we read them: write nothing, retry later.
            self.session.rollback()
            logger.warning("retention: segments changed during the sweep; batch skipped")
            return set()
        receipts.write_many(
            self.session,
            [
                receipts.ReceiptData(
                    organisation_id=d.rules.organisation_id,
                    camera_id=d.row.camera_id,
                    segment_id=d.row.id,
                    start=d.row.start,
                    end=d.row.end,
                    sha256=d.row.sha256,
                    size_bytes=d.row.size_bytes,
                    path=d.row.path,
                    rule=d.rule,
                    reason=d.reason,
                    index_state=SegmentState(d.row.state).value,
                )
                for d in doomed
            ],
            at=self.now,
        )
        if self.hooks.before_receipts_commit:
            self.hooks.before_receipts_commit(ids)
        self.session.commit()
        if self.hooks.after_receipts_commit:
            self.hooks.after_receipts_commit(ids)
        gone = self._unlink_and_forget([(d.row.id, d.row.path) for d in doomed])
        for d in doomed:
            if d.row.id not in gone:
                continue
            kind = RULE_DISK_PRESSURE if d.rule == RULE_DISK_PRESSURE else "retention"
            metrics.DELETED.labels(kind).inc()
            metrics.DELETED_BYTES.labels(kind).inc(d.row.size_bytes)
            stats = self.report.cameras[d.row.camera_id]
            stats.deleted += 1
            stats.deleted_bytes += d.row.size_bytes
            self.report.deleted += 1
            self.report.deleted_bytes += d.row.size_bytes
            if kind == RULE_DISK_PRESSURE:
                stats.pressure_deleted += 1
                self.report.pressure_deleted += 1
        if self.hooks.after_batch:
            self.hooks.after_batch(ids)
        return gone

    def _unlink_and_forget(self, rows: Sequence[tuple[int, str]]) -> set[int]:
        gone: set[int] = set()
        folders: set[Path] = set()
        for seg_id, rel in rows:
            try:
                path = resolve(self.data_dir, rel)
            except ValueError:
                logger.error("segment %s has an unsafe path; forgetting the row only", seg_id)
                gone.add(seg_id)
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                # The row stays "deleting" (its receipt is written): the next run retries.
                logger.error("cannot delete segment %s: %s", seg_id, exc.strerror)
                self.report.unlink_errors += 1
                continue
            folders.add(path.parent)
            gone.add(seg_id)
            if self.hooks.after_unlink:
                self.hooks.after_unlink(seg_id)
        if gone:
            self.session.execute(
                delete(Segment)
                .where(Segment.id.in_(gone), Segment.state == SegmentState.deleting)
                .execution_options(synchronize_session=False)
            )
            self.session.commit()
            for seg_id in gone:
                stale = self.session.identity_map.get(identity_key(Segment, seg_id))
                if stale is not None:
                    self.session.expunge(stale)
        recordings = self.data_dir / RECORDINGS
        for folder in folders:
            camera_dir = next((p for p in folder.parents if p.parent == recordings), None)
            if camera_dir is not None:
                prune_empty(folder, camera_dir)
        return gone

    def _finish_interrupted(self) -> int:
        """Rows a killed run left marked `deleting`: their receipts exist; finish the job."""
        done = 0
        after = 0
        while True:
            rows = self.session.execute(
                select(Segment.id, Segment.path)
                .where(Segment.state == SegmentState.deleting, Segment.id > after)
                .order_by(Segment.id)
                .limit(self.batch)
            ).all()
            if not rows:
                break
            after = rows[-1].id
            done += len(self._unlink_and_forget([(r.id, r.path) for r in rows]))
        if done:
            logger.warning("retention: finished %s deletions an interrupted sweep left", done)
        return done

    # -- disk pressure ------------------------------------------------------------------------

    def _previous_shortened(self) -> dict[int, dt.datetime]:
        last = self.session.scalars(
            select(RetentionSweep)
            .where(RetentionSweep.finished_at.is_not(None), RetentionSweep.dry_run.is_(False))
            .order_by(RetentionSweep.id.desc())
            .limit(1)
        ).first()
        if last is None:
            return {}
        return {
            int(k): dt.datetime.fromisoformat(v)
            for k, v in (last.shortened or {}).items()
            if dt.datetime.fromisoformat(v) > self.now
        }

    def _oldest(self, rules: CameraRules) -> Iterator[Any]:
        after: tuple[dt.datetime, int] | None = None
        while True:
            rows = due_rows(
                self.session, rules, limit=_PRESSURE_PROBE, after=after, before=self.now
            )
            yield from rows
            if len(rows) < _PRESSURE_PROBE:
                return
            after = (rows[-1].end, rows[-1].id)

    def _urgency(self, row: Any, rules: CameraRules) -> float:
        """How close the footage is to its camera's limit: age / allowed age (1.0 = due)."""
        age = (self.now - row.end).total_seconds()
        allowed = rules.policy.max_retention_hours * 3600
        return float("inf") if allowed <= 0 else age / allowed

    def _relieve_pressure(self, previous: dict[int, dt.datetime]) -> None:
        shortened = dict(previous)
        self.report.shortened = shortened
        if self.floor <= 0:
            return
        free = self.free_bytes(self.data_dir)
        self.report.disk_free_bytes = free
        if free >= self.floor:
            return
        logger.warning(
            "retention: %s bytes free, below the %s byte floor: deleting the oldest footage "
            "early; retention is now shorter than configured",
            free,
            self.floor,
        )
        heap: list[tuple[float, int, int, Any, Iterator[Any]]] = []
        tie = 0
        for rules in self.rules.values():
            it = self._oldest(rules)
            first = next(it, None)
            if first is not None:
                heap.append((-self._urgency(first, rules), rules.camera_id, tie, first, it))
                tie += 1
        heapq.heapify(heap)
        freed_by: dict[int, int] = defaultdict(int)
        count_by: dict[int, int] = defaultdict(int)
        free_before = free
        while heap and free < self.floor and self.should_continue():
            picked: dict[int, list[Any]] = defaultdict(list)
            projected = free
            n = 0
            while heap and projected < self.floor and n < self.batch:
                _, camera_id, _, row, it = heapq.heappop(heap)
                picked[camera_id].append(row)
                projected += row.size_bytes
                n += 1
                nxt = next(it, None)
                if nxt is not None:
                    rules = self.rules[camera_id]
                    heapq.heappush(heap, (-self._urgency(nxt, rules), camera_id, tie, nxt, it))
                    tie += 1
            doomed: list[_Doomed] = []
            for camera_id, rows in picked.items():
                rules = self.rules[camera_id]
                reason = (
                    f"disk pressure: {free} bytes free, below the {self.floor} byte floor; "
                    f"oldest footage of the camera closest to its "
                    f"{rules.policy.max_retention_hours}h limit"
                )
                doomed.extend(_Doomed(r, rules, RULE_DISK_PRESSURE, reason) for r in rows)
            if self.dry_run:
                self.report.planned.extend(
                    Planned(r.id, r.camera_id, r.start, r.end, r.size_bytes, RULE_DISK_PRESSURE)
                    for d in doomed
                    for r in (d.row,)
                )
                gone = {d.row.id for d in doomed}
                self.report.pressure_deleted += len(gone)
                for d in doomed:
                    self.report.cameras[d.row.camera_id].pressure_deleted += 1
            else:
                gone = self._delete(doomed)
            for d in doomed:
                if d.row.id not in gone:
                    continue
                camera_id = d.row.camera_id
                count_by[camera_id] += 1
                freed_by[camera_id] += d.row.size_bytes
                until = d.row.end + dt.timedelta(hours=d.rules.policy.max_retention_hours)
                shortened[camera_id] = max(until, shortened.get(camera_id, until))
            free = projected if self.dry_run else self.free_bytes(self.data_dir)
            if not picked:
                break
        self.report.disk_free_bytes = free
        if free < self.floor:
            logger.error(
                "retention: still below the free-space floor after deleting every unheld "
                "segment (%s bytes free)",
                free,
            )
        if self.dry_run:
            return
        for camera_id, count in count_by.items():
            rules = self.rules[camera_id]
            audit.record(
                self.session,
                action="retention.disk_pressure",
                organisation_id=rules.organisation_id,
                target_type="camera",
                target_id=camera_id,
                details={
                    "camera_id": camera_id,
                    "deleted": count,
                    "freed_bytes": freed_by[camera_id],
                    "free_bytes_before": free_before,
                    "free_bytes_after": free,
                    "floor_bytes": self.floor,
                    "retention_hours": rules.policy.max_retention_hours,
                    "shortened_until": shortened[camera_id].isoformat(),
                },
                at=self.now,
            )
        self.session.commit()

    def _publish(self) -> None:
        metrics.LAST_SWEEP.set(self.now.timestamp())
        metrics.SWEEP_SECONDS.set(self.report.seconds)
        metrics.DISK_FLOOR.set(self.floor)
        if self.report.disk_free_bytes is not None:
            metrics.DISK_FREE.set(self.report.disk_free_bytes)
        metrics.HELD_DUE.set(self.report.held_past_retention)
        for camera_id in set(self.rules) | set(self.report.shortened):
            metrics.SHORTENED.labels(str(camera_id)).set(
                1 if camera_id in self.report.shortened else 0
            )
