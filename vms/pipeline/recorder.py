"""Masked frames -> fixed-length H.264/MP4 segments that are complete, durable and indexed.

Per segment: encode into `<start-ms>.mp4.partial` in the final folder; at the end flush the
encoder and write the trailer, fsync the file, hash it (SHA-256), `os.replace` it to its final
name, fsync the folder, and only then index it (`SegmentIndex.add`, one committed transaction).
A crash before the rename leaves a `.partial` that the next worker of the camera discards; a
crash between rename and commit leaves a complete file that the next worker indexes from the
provenance written into the file itself (camera, start, mask-plan hash in the MP4 metadata). So
after any crash and restart, files and index agree.

Each segment gets its own encoder: it starts with an IDR frame and plays on its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NoReturn, Protocol

import av

from retention.paths import PARTIAL_SUFFIX, RECORDINGS, SUFFIX, parse_relative, partial_path
from retention.service import segment_path

logger = logging.getLogger(__name__)

_TIME_BASE = Fraction(1, 1000)  # frame timestamps in milliseconds of the worker's clock
_PROVENANCE_KEY = "comment"
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class RecorderError(Exception):
    """Writing a segment failed; the partial file is gone, the index untouched."""


class DiskFull(RecorderError):
    """No space left for footage (ENOSPC/EDQUOT)."""


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    camera_id: int
    start: dt.datetime
    end: dt.datetime
    path: str  # relative to the data dir, POSIX
    size_bytes: int
    sha256: str
    mask_plan_hash: str | None
    codec: str
    width: int
    height: int
    frames: int


class SegmentIndex(Protocol):
    """Where finished segments are recorded (the footage index)."""

    def add(self, info: SegmentInfo) -> None:
        """Index one segment in a committed transaction; raise if it could not be stored."""

    def indexed_paths(self, camera_id: int, start: dt.datetime, end: dt.datetime) -> set[str]:
        """Paths of the camera's indexed segments starting in [start, end)."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


def provenance(camera_id: int, start: dt.datetime, mask_plan_hash: str | None) -> str:
    """What the file itself says about where it comes from (MP4 `comment` metadata)."""
    return json.dumps(
        {
            "vms": {
                "camera_id": camera_id,
                "start": start.isoformat(),
                "mask_plan_hash": mask_plan_hash,
            }
        },
        sort_keys=True,
    )


class _OpenSegment:
    def __init__(
        self,
        *,
        final: Path,
        start: dt.datetime,
        start_mono: float,
        width: int,
        height: int,
        fps_hint: float,
        preset: str,
        crf: int,
        metadata: str,
    ) -> None:
        self.final = final
        self.partial = partial_path(final)
        self.start = start
        self.start_mono = start_mono
        self.last_mono = start_mono
        self.width = width
        self.height = height
        self.frames = 0
        self.last_pts = -1
        self.frame_step = 1.0 / fps_hint
        final.parent.mkdir(parents=True, exist_ok=True)
        self.container: Any = av.open(str(self.partial), mode="w", format="mp4")
        try:
            self.container.metadata[_PROVENANCE_KEY] = metadata
            stream = self.container.add_stream(
                "libx264", rate=Fraction(fps_hint).limit_denominator(1001)
            )
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = _TIME_BASE
            # One thread per camera: cameras, not threads, fill the cores, and per-camera CPU
            # stays measurable.
            stream.options = {"preset": preset, "crf": str(crf), "threads": "1"}
            self.stream: Any = stream
        except BaseException:
            self.container.close()
            raise

    def encode(self, frame: av.VideoFrame, mono: float) -> None:
        pts = round((mono - self.start_mono) * 1000)
        if pts <= self.last_pts:
            pts = self.last_pts + 1
        frame.pts = pts
        frame.time_base = _TIME_BASE
        # A decoded frame keeps the camera's I/P decision; the encoder must make its own.
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.last_pts = pts
        self.last_mono = mono
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()

    def end_time(self) -> dt.datetime:
        """One frame interval after the last frame."""
        step = self.frame_step
        if self.frames > 1:
            step = (self.last_mono - self.start_mono) / (self.frames - 1)
        return self.start + dt.timedelta(seconds=self.last_mono - self.start_mono + step)

    def abandon(self) -> None:
        # The trailer of a file we delete anyway may fail to write: ignore that.
        with contextlib.suppress(av.FFmpegError, OSError):
            self.container.close()
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()


class SegmentRecorder:
    """Writes one camera's masked frames as segments of `segment_seconds`.

    `write` may raise DiskFull or RecorderError; the segment in progress is then discarded
    and nothing is indexed, and the recorder is ready to start a fresh segment later.
    """

    def __init__(
        self,
        *,
        camera_id: int,
        data_dir: Path,
        segment_seconds: float,
        mask_plan_hash: str | None,
        index: SegmentIndex,
        preset: str = "ultrafast",
        crf: int = 23,
        fps_hint: float = 25.0,
        on_segment: Callable[[SegmentInfo], None] | None = None,
    ) -> None:
        if segment_seconds <= 0:
            raise ValueError("segment_seconds must be positive")
        self.camera_id = camera_id
        self.data_dir = data_dir
        self.segment_seconds = segment_seconds
        self.mask_plan_hash = mask_plan_hash
        self.index = index
        self.preset = preset
        self.crf = crf
        self.fps_hint = fps_hint
        self.on_segment = on_segment
        self.segments_written = 0
        self._seg: _OpenSegment | None = None
        # Finalising (trailer, fsync, hash, rename, index) runs on one thread of its own, in
        # order: a slow disk or database commit must not stall the frames of the next segment.
        self._finaliser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finalise")
        self._pending: list[Future[SegmentInfo | None]] = []

    @property
    def is_open(self) -> bool:
        return self._seg is not None

    @property
    def segment_start(self) -> dt.datetime | None:
        return self._seg.start if self._seg is not None else None

    def write(self, frame: av.VideoFrame, at: dt.datetime, mono: float) -> None:
        """Add a masked yuv420p frame decoded at `at` (wall) / `mono` (monotonic).

        Raises DiskFull/RecorderError for this frame or for an earlier segment whose
        finalising failed; the segment in progress is then discarded as well.
        """
        self.raise_failures()
        seg = self._seg
        if seg is not None and (
            (frame.width, frame.height) != (seg.width, seg.height)
            or mono - seg.start_mono >= self.segment_seconds
            or mono < seg.last_mono
        ):
            # The next segment starts where this one ends: segments tile time.
            at = _to_ms(at)
            self.finish(end=at, wait=False)
        if self._seg is None:
            self._seg = self._open(frame, at, mono)
        seg = self._seg
        try:
            seg.encode(frame, mono)
        except (av.FFmpegError, OSError) as exc:
            self._seg = None
            _fail(seg, exc)

    def finish(self, end: dt.datetime | None = None, *, wait: bool = True) -> SegmentInfo | None:
        """Finalise the segment in progress (if it has frames): durable, renamed, indexed.

        `end` is where the next segment starts, when there is one. With `wait` this returns
        once every segment handed over so far is indexed (raising what failed), and gives the
        one it finished; without, failures surface at the next `write` or `raise_failures`.
        """
        seg, self._seg = self._seg, None
        job = self._finaliser.submit(self._finalise, seg, end) if seg is not None else None
        if job is not None:
            self._pending.append(job)
        if not wait:
            return None
        futures.wait(self._pending)
        self.raise_failures()
        return job.result() if job is not None else None

    def drain(self) -> None:
        """Wait until every segment handed over so far is finalised (the open one stays open)."""
        futures.wait(self._pending)
        self.raise_failures()

    def raise_failures(self) -> None:
        """Raise the first error of a finished finalising job (and drop the open segment)."""
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for job in done:
            exc = job.exception()
            if exc is not None:
                self.discard()
                raise exc

    def close(self) -> None:
        """Finalise what is open and stop the finalising thread."""
        try:
            self.finish()
        finally:
            self._finaliser.shutdown(wait=True)

    def _finalise(self, seg: _OpenSegment, end: dt.datetime | None) -> SegmentInfo | None:
        if seg.frames == 0:
            seg.abandon()
            return None
        try:
            seg.close()
            fd = os.open(seg.partial, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            size = seg.partial.stat().st_size
            sha = file_sha256(seg.partial)
            os.replace(seg.partial, seg.final)
            fsync_dir(seg.final.parent)
        except (av.FFmpegError, OSError) as exc:
            _unlink_quietly(seg.final)
            _fail(seg, exc)
        info = SegmentInfo(
            camera_id=self.camera_id,
            start=seg.start,
            end=end if end is not None and end > seg.start else seg.end_time(),
            path=seg.final.relative_to(self.data_dir).as_posix(),
            size_bytes=size,
            sha256=sha,
            mask_plan_hash=self.mask_plan_hash,
            codec="h264",
            width=seg.width,
            height=seg.height,
            frames=seg.frames,
        )
        try:
            self.index.add(info)
        except Exception as exc:
            # Not indexed: the file must not stay behind as an orphan.
            _unlink_quietly(seg.final)
            raise RecorderError(f"indexing segment {info.path} failed: {exc}") from exc
        self.segments_written += 1
        if self.on_segment is not None:
            self.on_segment(info)
        return info

    def discard(self) -> None:
        """Drop the segment in progress without indexing it."""
        seg, self._seg = self._seg, None
        if seg is not None:
            seg.abandon()

    def _open(self, frame: av.VideoFrame, at: dt.datetime, mono: float) -> _OpenSegment:
        at = _to_ms(at)
        final = segment_path(self.data_dir, self.camera_id, at)
        while final.exists() or partial_path(final).exists():
            # Two segments in one millisecond (a restart): keep both.
            at += dt.timedelta(milliseconds=1)
            final = segment_path(self.data_dir, self.camera_id, at)
        try:
            return _OpenSegment(
                final=final,
                start=at,
                start_mono=mono,
                width=frame.width,
                height=frame.height,
                fps_hint=self.fps_hint,
                preset=self.preset,
                crf=self.crf,
                metadata=provenance(self.camera_id, at, self.mask_plan_hash),
            )
        except (av.FFmpegError, OSError) as exc:
            _unlink_quietly(partial_path(final))
            raise _error_for(exc, str(final)) from None


def _to_ms(at: dt.datetime) -> dt.datetime:
    # Millisecond starts: the file name carries it, so name, provenance and index agree.
    return at.astimezone(dt.UTC).replace(microsecond=at.microsecond // 1000 * 1000)


def _fail(seg: _OpenSegment, exc: BaseException) -> NoReturn:
    seg.abandon()
    raise _error_for(exc, str(seg.partial)) from None


def _error_for(exc: BaseException, where: str) -> RecorderError:
    if _is_disk_full(exc):
        return DiskFull(f"disk full while writing {where}")
    return RecorderError(f"cannot write {where}: {type(exc).__name__}: {exc}")


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
        fsync_dir(path.parent)
    except OSError:
        pass


# -- recovery after a crash ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recovery:
    discarded: list[tuple[str, int]]  # (relative path, size) of unfinished .partial files
    indexed: list[SegmentInfo]  # complete files that had missed their index row


def recover(*, data_dir: Path, camera_id: int, index: SegmentIndex) -> Recovery:
    """Make this camera's folder and the index agree again after its writer died.

    Call before a worker writes anything, while no other writer of the camera runs. `.partial`
    files are unfinished segments (the trailer never got written, so they do not play): they
    are deleted. Finished `.mp4` files without an index row were renamed just before a crash
    hit the commit: they are indexed from the provenance the recorder put inside them.
    """
    base = data_dir / RECORDINGS / str(camera_id)
    if not base.is_dir():
        return Recovery([], [])
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
    indexed: list[SegmentInfo] = []
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
            meta = container.metadata.get(_PROVENANCE_KEY)
            stream = container.streams.video[0]
            frames = 0
            last = 0.0
            for packet in container.demux(stream):
                if packet.pts is None or packet.time_base is None:
                    continue
                frames += 1
                last = max(last, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            width, height = stream.codec_context.width, stream.codec_context.height
    except (av.FFmpegError, OSError, IndexError):
        return None
    try:
        origin = json.loads(meta or "")["vms"]
        plan_hash = origin["mask_plan_hash"]
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
        codec="h264",
        width=width,
        height=height,
        frames=frames,
    )
