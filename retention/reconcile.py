"""Reconciliation: do the recordings folder and the footage index agree?

`check` walks each camera's folder and compares it with that camera's index rows: files without
rows (orphans: a crash between rename and commit, or files put there by hand), rows without files
(a lost disk, a hand-deleted file), and `.partial` files a dead writer left behind. With
`repair` it fixes what it can, always leaving a receipt for a deleted file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry import service as registry_service
from retention import metrics, receipts
from retention.footage import CameraRules, camera_rules, cameras_with_footage
from retention.holds import active_windows
from retention.locking import exclusive
from retention.models import Segment, SegmentState
from retention.paths import (
    PARTIAL_SUFFIX,
    RECORDINGS,
    SUFFIX,
    from_epoch_ms,
    parse_relative,
    resolve,
)
from retention.rules import RULE_ORPHAN, RULE_STALE_PARTIAL, due_for_deletion, holding
from vms.core import audit
from vms.core.db import utcnow
from vms.core.errors import Conflict
from vms.core.files import file_sha256, fsync_dir

logger = logging.getLogger(__name__)

# Files younger than this may belong to a segment the pipeline is indexing right now.
DEFAULT_GRACE = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class OrphanFile:
    path: str
    camera_id: int | None
    start: dt.datetime | None
    size_bytes: int
    modified_at: dt.datetime
    action: str  # deleted | indexed | kept: <why> | reported


@dataclass(frozen=True)
class DanglingRow:
    segment_id: int
    camera_id: int
    path: str
    action: str  # marked missing | reported | restored


@dataclass
class CheckReport:
    files: int = 0
    rows: int = 0
    orphan_files: list[OrphanFile] = field(default_factory=list)
    dangling_rows: list[DanglingRow] = field(default_factory=list)
    stale_partials: list[OrphanFile] = field(default_factory=list)
    foreign_files: list[str] = field(default_factory=list)
    known_missing: int = 0
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """Files and index agree: nothing orphaned, dangling, stale or foreign was found."""
        return not (
            self.orphan_files or self.dangling_rows or self.stale_partials or self.foreign_files
        )

    @property
    def unresolved(self) -> int:
        """Findings still open after this run (everything, unless --repair fixed it)."""
        fixed = ("deleted", "indexed", "marked missing", "restored")
        return (
            sum(1 for o in self.orphan_files if o.action not in fixed)
            + sum(1 for d in self.dangling_rows if d.action not in fixed)
            + sum(1 for p in self.stale_partials if p.action not in fixed)
            + len(self.foreign_files)
        )


def check(
    *,
    session: Session,
    data_dir: Path,
    repair: bool,
    now: dt.datetime | None = None,
    grace: dt.timedelta = DEFAULT_GRACE,
) -> CheckReport:
    """Compare the recordings folder with the index: files without rows, rows without files.

    With `repair`: orphan files past retention (and not held) are deleted with a receipt, younger
    readable orphans are indexed again, stale `.partial` files are deleted with a receipt, rows
    without files are marked `missing` (and back to `ok` if their file reappears). Files and rows
    younger than `grace` are left alone: the pipeline may be between rename and commit. Repair
    commits `session` itself (a receipt must be durable before its file is unlinked).
    """
    now = now or utcnow()
    report = CheckReport(repaired=repair)
    lock = exclusive(data_dir) if repair else contextlib.nullcontext(True)
    with lock as locked:
        if not locked:
            raise Conflict("a retention sweep or repair is running; try again shortly")
        checker = _Check(session, data_dir, now, grace, repair, report)
        checker.run()
    return report


class _Check:
    def __init__(
        self,
        session: Session,
        data_dir: Path,
        now: dt.datetime,
        grace: dt.timedelta,
        repair: bool,
        report: CheckReport,
    ) -> None:
        self.session = session
        self.data_dir = data_dir
        self.now = now
        self.grace = grace
        self.repair = repair
        self.report = report
        self.holds = active_windows(session=session, now=now)

    def run(self) -> None:
        root = self.data_dir / RECORDINGS
        on_disk: set[int] = set()
        if root.is_dir():
            for entry in os.scandir(root):
                if entry.is_dir() and entry.name.isdigit():
                    on_disk.add(int(entry.name))
                else:
                    self.report.foreign_files.append(f"{RECORDINGS}/{entry.name}")
        for camera_id in sorted(on_disk | set(cameras_with_footage(self.session))):
            self._camera(camera_id)
        if self.repair:
            self.session.commit()

    def _walk(self, camera_id: int) -> dict[str, os.stat_result]:
        files: dict[str, os.stat_result] = {}
        base = self.data_dir / RECORDINGS / str(camera_id)
        if not base.is_dir():
            return files
        for folder, _dirs, names in os.walk(base):
            for name in names:
                full = Path(folder) / name
                rel = full.relative_to(self.data_dir).as_posix()
                try:
                    files[rel] = full.stat()
                except FileNotFoundError:  # deleted while we looked
                    continue
        return files

    def _camera(self, camera_id: int) -> None:
        files = self._walk(camera_id)
        rows = {
            r.path: r
            for r in self.session.execute(
                select(Segment.id, Segment.path, Segment.state, Segment.created_at).where(
                    Segment.camera_id == camera_id
                )
            )
        }
        self.report.rows += len(rows)
        fresh = self.now - self.grace
        missing_rows: list[Any] = []
        for rel, st in sorted(files.items()):
            modified = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
            if rel.endswith(PARTIAL_SUFFIX):
                if modified < fresh:
                    self._stale_partial(camera_id, rel, st, modified)
                continue
            if rel in rows:
                self.report.files += 1
                continue
            if not rel.endswith(SUFFIX):
                self.report.foreign_files.append(rel)
                continue
            self.report.files += 1
            if modified >= fresh:
                continue
            self._orphan(camera_id, rel, st, modified)
        for rel, row in rows.items():
            state = SegmentState(row.state)
            if state is SegmentState.deleting:
                continue  # the sweep finishes it
            present = rel in files or self._exists(rel)
            if state is SegmentState.missing:
                if present:
                    self._restore(row, camera_id)
                else:
                    self.report.known_missing += 1
                continue
            if not present and row.created_at < fresh:
                missing_rows.append(row)
        if missing_rows:
            self._mark_missing(camera_id, missing_rows)

    def _exists(self, rel: str) -> bool:
        try:
            return resolve(self.data_dir, rel).exists()
        except ValueError:
            return False

    def _rules(self, camera_id: int) -> CameraRules | None:
        if registry_service.get_camera(session=self.session, camera_id=camera_id) is None:
            return None
        return camera_rules(self.session, camera_id, self.now, self.holds)

    def _remove_with_receipt(
        self,
        rules: CameraRules,
        rel: str,
        st: os.stat_result,
        start: dt.datetime | None,
        end: dt.datetime,
        rule: str,
        reason: str,
    ) -> bool:
        full = resolve(self.data_dir, rel)
        try:
            sha = file_sha256(full)
        except FileNotFoundError:
            return True
        since = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC) - dt.timedelta(seconds=1)
        if not receipts.already_receipted(
            self.session, camera_id=rules.camera_id, path=rel, sha256=sha, since=since
        ):
            receipts.write(
                self.session,
                organisation_id=rules.organisation_id,
                camera_id=rules.camera_id,
                segment_id=None,
                start=start,
                end=end,
                sha256=sha,
                size_bytes=st.st_size,
                path=rel,
                rule=rule,
                reason=reason,
                index_state=None,
                at=self.now,
            )
            self.session.commit()
        try:
            full.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error("cannot delete %s: %s", rel, exc.strerror)
            return False
        fsync_dir(full.parent, missing_ok=True)
        kind = "orphan" if rule == RULE_ORPHAN else "partial"
        metrics.DELETED.labels(kind).inc()
        metrics.DELETED_BYTES.labels(kind).inc(st.st_size)
        return True

    def _orphan(self, camera_id: int, rel: str, st: os.stat_result, modified: dt.datetime) -> None:
        parsed = parse_relative(rel)
        if parsed is None or parsed.camera_id != camera_id:
            self.report.foreign_files.append(rel)
            return
        start = parsed.start
        # The file's end is not in its name; its last write is the latest it can have ended.
        end = max(modified, start)
        rules = self._rules(camera_id)
        action = "reported"
        if rules is None:
            action = "kept: unknown camera"
        else:
            span = _Span(start, end)
            verdict = due_for_deletion(span, rules.policy, rules.holds, self.now)
            if verdict.held_by:
                action = "kept: under legal hold"
            elif verdict.due or self._receipted(rules, rel, st):
                # Past retention, or deleted once already (an unlink lost in a power cut, after
                # its receipt and row deletion were committed): it must go, with one receipt.
                why = "past retention" if verdict.due else "deleted before"
                action = "deleted" if self.repair else f"reported: {why}"
                if self.repair and not self._remove_with_receipt(
                    rules,
                    rel,
                    st,
                    start,
                    end,
                    RULE_ORPHAN,
                    "file without index row, " + verdict.rule,
                ):
                    action = "kept: cannot delete"
            elif self.repair:
                action = self._reindex(camera_id, rel, st, start)
            else:
                action = "reported: within retention"
        self.report.orphan_files.append(
            OrphanFile(rel, camera_id, start, st.st_size, modified, action)
        )

    def _receipted(self, rules: CameraRules, rel: str, st: os.stat_result) -> bool:
        try:
            sha = file_sha256(resolve(self.data_dir, rel))
        except OSError:
            return False
        since = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC) - dt.timedelta(seconds=1)
        return receipts.already_receipted(
            self.session, camera_id=rules.camera_id, path=rel, sha256=sha, since=since
        )

    def _reindex(self, camera_id: int, rel: str, st: os.stat_result, start: dt.datetime) -> str:
        """A finished file whose index row was lost (crash between rename and commit)."""
        probe = probe_segment(resolve(self.data_dir, rel))
        if probe is None:
            return "kept: unreadable"
        duration, codec, width, height, frames = probe
        try:
            with self.session.begin_nested():
                self._add_found(camera_id, rel, st, start, duration, codec, width, height, frames)
        except IntegrityError:
            # The recorder's own start-up recovery indexed it a moment ago.
            return "kept: indexed meanwhile"
        audit.record(
            self.session,
            action="retention.segment_reindexed",
            organisation_id=self._org(camera_id),
            target_type="camera",
            target_id=camera_id,
            details={"path": rel, "start": start.isoformat(), "size_bytes": st.st_size},
            at=self.now,
        )
        return "indexed"

    def _add_found(
        self,
        camera_id: int,
        rel: str,
        st: os.stat_result,
        start: dt.datetime,
        duration: dt.timedelta,
        codec: str,
        width: int,
        height: int,
        frames: int,
    ) -> None:
        self.session.add(
            Segment(
                camera_id=camera_id,
                start=start,
                end=start + duration,
                path=rel,
                size_bytes=st.st_size,
                sha256=file_sha256(resolve(self.data_dir, rel)),
                mask_plan_hash=None,
                codec=codec,
                width=width,
                height=height,
                frames=frames,
                state=SegmentState.ok,
            )
        )
        self.session.flush()

    def _org(self, camera_id: int) -> int | None:
        camera = registry_service.get_camera(session=self.session, camera_id=camera_id)
        return camera.organisation_id if camera else None

    def _stale_partial(
        self, camera_id: int, rel: str, st: os.stat_result, modified: dt.datetime
    ) -> None:
        action = "reported"
        rules = self._rules(camera_id)
        start: dt.datetime | None = None
        name = rel.rsplit("/", 1)[-1].removesuffix(PARTIAL_SUFFIX)
        if name.isdigit():
            start = from_epoch_ms(int(name))
        if self.repair:
            if rules is None:
                action = "kept: unknown camera"
            elif start is not None and holding(_Span(start, modified), rules.holds, self.now):
                action = "kept: under legal hold"
            elif self._remove_with_receipt(
                rules,
                rel,
                st,
                start,
                modified,
                RULE_STALE_PARTIAL,
                "unfinished recording abandoned by a stopped writer",
            ):
                action = "deleted"
            else:
                action = "kept: cannot delete"
        self.report.stale_partials.append(
            OrphanFile(rel, camera_id, start, st.st_size, modified, action)
        )

    def _mark_missing(self, camera_id: int, rows: list[Any]) -> None:
        action = "marked missing" if self.repair else "reported"
        for r in rows:
            self.report.dangling_rows.append(DanglingRow(r.id, camera_id, r.path, action))
        if not self.repair:
            return
        ids = [r.id for r in rows]
        for i in range(0, len(ids), 500):
            self.session.execute(
                update(Segment)
                .where(Segment.id.in_(ids[i : i + 500]), Segment.state == SegmentState.ok)
                .values(state=SegmentState.missing)
                .execution_options(synchronize_session=False)
            )
        audit.record(
            self.session,
            action="retention.segments_missing",
            organisation_id=self._org(camera_id),
            target_type="camera",
            target_id=camera_id,
            details={"count": len(ids), "segment_ids": ids[:1000]},
            at=self.now,
        )

    def _restore(self, row: Any, camera_id: int) -> None:
        self.report.dangling_rows.append(
            DanglingRow(row.id, camera_id, row.path, "restored" if self.repair else "reported")
        )
        if self.repair:
            self.session.execute(
                update(Segment)
                .where(Segment.id == row.id, Segment.state == SegmentState.missing)
                .values(state=SegmentState.ok)
                .execution_options(synchronize_session=False)
            )


@dataclass(frozen=True)
class _Span:
    start: dt.datetime
    end: dt.datetime


def probe_segment(path: Path) -> tuple[dt.timedelta, str, int, int, int] | None:
    """Duration, codec, size and frame count of an MP4, or None if it does not decode."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = next(iter(container.streams.video), None)
            if stream is None:
                return None
            frames = 0
            last = 0.0
            for packet in container.demux(stream):
                if packet.pts is None or packet.time_base is None:
                    continue
                frames += 1
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                last = max(last, end)
            if frames == 0:
                return None
            base = stream.time_base
            first = float(stream.start_time * base) if stream.start_time and base else 0.0
            return (
                dt.timedelta(seconds=max(last - first, 0.001)),
                stream.codec_context.name,
                stream.codec_context.width,
                stream.codec_context.height,
                frames,
            )
    except (av.error.FFmpegError, OSError, StopIteration):
        return None
