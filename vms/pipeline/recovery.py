"""Crash recovery for one camera's recordings: make its folder and the index agree again
before a new worker writes (see `vms.pipeline.recorder` for the write order it relies on)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av

from retention.paths import PARTIAL_SUFFIX, RECORDINGS, SUFFIX, parse_relative
from vms.core.files import file_sha256, fsync_dir
from vms.pipeline.recorder import (
    MASKED_BY_CAMERA,
    MASKED_BY_VMS,
    PROVENANCE_KEY,
    QUARANTINED,
    SegmentIndex,
    SegmentInfo,
    read_pending,
    write_pending,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recovery:
    discarded: list[tuple[str, int]]  # (relative path, size) of unfinished .partial files
    indexed: list[SegmentInfo]  # complete files that had missed their index row


def recover(*, data_dir: Path, camera_id: int, index: SegmentIndex) -> Recovery:
    """Make this camera's folder and the index agree again after its writer died.

    Call before a worker writes anything, while no other writer of the camera runs. `.partial`
    files are unfinished segments (the trailer never got written, so they do not play): they
    are deleted. Finished `.mp4` files without an index row were renamed just before a crash
    hit the commit: they are indexed from the provenance the recorder put inside them. A
    passthrough file found that way is indexed quarantined: whether a mask check covered it
    died with the worker.
    """
    waited = _index_pending(data_dir, camera_id, index)
    base = data_dir / RECORDINGS / str(camera_id)
    if not base.is_dir():
        return Recovery([], waited)
    partials: list[Path] = []
    finals: list[Path] = []
    for folder, _dirs, names in os.walk(base):
        for name in names:
            if name.endswith(PARTIAL_SUFFIX):
                partials.append(Path(folder) / name)
            elif name.endswith(SUFFIX):
                finals.append(Path(folder) / name)
    discarded: list[tuple[str, int]] = []
    for path in partials:
        try:
            size = path.stat().st_size
            path.unlink()
            fsync_dir(path.parent)
        except FileNotFoundError:
            continue
        rel = path.relative_to(data_dir).as_posix()
        discarded.append((rel, size))
        logger.warning("camera %s: discarded unfinished segment %s", camera_id, rel)
    indexed: list[SegmentInfo] = list(waited)
    candidates = _recent(finals, data_dir, camera_id)
    if candidates:
        starts = [start for _, start in candidates]
        known = index.indexed_paths(
            camera_id, min(starts), max(starts) + dt.timedelta(milliseconds=1)
        )
        for path, start in candidates:
            rel = path.relative_to(data_dir).as_posix()
            if rel in known:
                continue
            info = _describe(path, rel, camera_id, start)
            if info is None:
                logger.error(
                    "camera %s: %s is not indexed and is not a readable segment of ours; left "
                    "for the retention check",
                    camera_id,
                    rel,
                )
                continue
            try:
                index.add(info)
            except Exception:
                logger.exception("camera %s: cannot index recovered segment %s", camera_id, rel)
                continue
            indexed.append(info)
            logger.warning("camera %s: indexed segment %s that missed its row", camera_id, rel)
    return Recovery(discarded, indexed)


def _index_pending(data_dir: Path, camera_id: int, index: SegmentIndex) -> list[SegmentInfo]:
    """Index the segments a previous worker finished but could not index (database busy or
    down); what still fails stays listed for the next try."""
    pending = read_pending(data_dir, camera_id)
    if not pending:
        return []
    known = index.indexed_paths(
        camera_id,
        min(p.start for p in pending),
        max(p.start for p in pending) + dt.timedelta(milliseconds=1),
    )
    indexed: list[SegmentInfo] = []
    left: list[SegmentInfo] = []
    for info in pending:
        path = data_dir / info.path
        if info.path in known:
            continue
        if not path.is_file() or file_sha256(path) != info.sha256:
            # Not what was finished: the retention check reports it; never index it blindly.
            logger.error("camera %s: pending segment %s is missing or changed", camera_id, path)
            continue
        try:
            index.add(info)
        except Exception:
            logger.exception("camera %s: cannot index pending segment %s yet", camera_id, path)
            left.append(info)
            continue
        indexed.append(info)
    write_pending(data_dir, camera_id, left)
    if indexed:
        logger.warning("camera %s: indexed %s segments left pending", camera_id, len(indexed))
    return indexed


def _recent(finals: list[Path], data_dir: Path, camera_id: int) -> list[tuple[Path, dt.datetime]]:
    """The newest finished files: the only ones a crash between rename and commit can leave
    unindexed (each worker indexes before it starts the next segment)."""
    parsed: list[tuple[Path, dt.datetime]] = []
    for path in finals:
        p = parse_relative(path.relative_to(data_dir).as_posix())
        if p is not None and p.camera_id == camera_id:
            parsed.append((path, p.start))
    parsed.sort(key=lambda item: item[1])
    return parsed[-3:]


def _describe(path: Path, rel: str, camera_id: int, start: dt.datetime) -> SegmentInfo | None:
    """The index entry of a finished file we wrote, from its own provenance; None otherwise."""
    try:
        with av.open(str(path)) as container:
            meta = container.metadata.get(PROVENANCE_KEY)
            stream = container.streams.video[0]
            frames = 0
            last = 0.0
            for packet in container.demux(stream):
                if packet.pts is None or packet.time_base is None:
                    continue
                frames += 1
                last = max(last, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            width, height = stream.codec_context.width, stream.codec_context.height
            codec = str(stream.codec_context.name)
    except (av.FFmpegError, OSError, IndexError):
        return None
    try:
        origin = json.loads(meta or "")["vms"]
        plan_hash = origin["mask_plan_hash"]
        masked_by = str(origin.get("masked_by", MASKED_BY_VMS))
        ours = (
            origin["camera_id"] == camera_id and dt.datetime.fromisoformat(origin["start"]) == start
        )
    except (ValueError, KeyError, TypeError):
        return None
    if frames == 0 or not ours:
        return None
    return SegmentInfo(
        camera_id=camera_id,
        start=start,
        end=start + dt.timedelta(seconds=max(last, 0.001)),
        path=rel,
        size_bytes=path.stat().st_size,
        sha256=file_sha256(path),
        mask_plan_hash=plan_hash,
        codec=codec,
        width=width,
        height=height,
        frames=frames,
        masked_by=masked_by,
        # Fail closed: a camera-masked file whose check outcome is unknown is never played.
        **({"state": QUARANTINED} if masked_by == MASKED_BY_CAMERA else {}),
    )
