"""Masked frames -> fixed-length H.264/MP4 segments that are complete, durable and indexed.

Over 500 lines on purpose: the crash-safe order below runs through `SegmentRecorder`, its
segment classes and the `index-pending` journal, and it is only convincing read in one place.

Per segment: encode into `<start-ms>.mp4.partial` in the final folder; at the end flush the
encoder and write the trailer, fsync the file, hash it (SHA-256), `os.replace` it to its final
name, fsync the folder, and only then index it (`SegmentIndex.add`, one committed transaction).
A crash before the rename leaves a `.partial` that the next worker of the camera discards; a
crash between rename and commit leaves a complete file that the next worker indexes from the
provenance written into the file itself (camera, start, mask-plan hash in the MP4 metadata). So
after any crash and restart, files and index agree.

A finished segment is never deleted because indexing it failed (the database busy or down):
it stays on disk, is listed in `index-pending/<camera>.jsonl` (fsynced), and is indexed as soon
as the index answers again, by this recorder or by the next worker of the camera. The one
exception is an index that refuses the segment for good (`SegmentRefused`: in the cluster, the
camera's lease was taken over and its new holder records that time): the file is removed, as the
footage of that time is the new holder's to write.

Each segment gets its own encoder: it starts with an IDR frame and plays on its own. A
passthrough camera's segments are its own H.264, remuxed without decoding (`write_packet`): they
start at one of the camera's keyframes, and the caller (which checks keyframes) says with
`finish(state=...)` whether a segment is covered by a passing mask check (`ok`) or not
(`quarantined`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
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

from retention.paths import partial_path, segment_path
from vms.core.files import file_sha256, fsync_dir, fsync_file

logger = logging.getLogger(__name__)

_TIME_BASE = Fraction(1, 1000)  # frame timestamps in milliseconds of the worker's clock
PROVENANCE_KEY = "comment"
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class RecorderError(Exception):
    """Writing a segment failed; the partial file is gone, the index untouched."""


class SegmentRefused(Exception):
    """Raised by a `SegmentIndex` that will never index this segment (not a failure to retry):
    the recorder removes the file."""


class DiskFull(RecorderError):
    """No space left for footage (ENOSPC/EDQUOT)."""


PENDING_DIR = "index-pending"


def pending_index_path(data_dir: Path, camera_id: int) -> Path:
    """Where a camera's finished but not yet indexed segments are listed."""
    return data_dir / PENDING_DIR / f"{camera_id}.jsonl"


# Segment states and who masked a segment, as the index stores them (retention.models).
OK = "ok"
QUARANTINED = "quarantined"
MASKED_BY_VMS = "vms"
MASKED_BY_CAMERA = "camera"


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
    state: str = OK
    masked_by: str = MASKED_BY_VMS

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> SegmentInfo:
        data = json.loads(line)
        data["start"] = dt.datetime.fromisoformat(data["start"])
        data["end"] = dt.datetime.fromisoformat(data["end"])
        return cls(**data)


def write_pending(data_dir: Path, camera_id: int, infos: list[SegmentInfo]) -> None:
    """Replace the camera's pending list (atomically; removed when empty)."""
    path = pending_index_path(data_dir, camera_id)
    if not infos:
        if path.exists():
            path.unlink()
            fsync_dir(path.parent)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        fh.writelines(info.to_json() + "\n" for info in infos)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_pending(data_dir: Path, camera_id: int) -> list[SegmentInfo]:
    path = pending_index_path(data_dir, camera_id)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(SegmentInfo.from_json(line))
        except (ValueError, KeyError, TypeError):
            logger.error("camera %s: unreadable line in %s", camera_id, path)
    return out


class SegmentIndex(Protocol):
    """Where finished segments are recorded (the footage index)."""

    def add(self, info: SegmentInfo) -> None:
        """Index one segment in a committed transaction; raise if it could not be stored."""

    def indexed_paths(self, camera_id: int, start: dt.datetime, end: dt.datetime) -> set[str]:
        """Paths of the camera's indexed segments starting in [start, end)."""


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


def provenance(
    camera_id: int, start: dt.datetime, mask_plan_hash: str | None, masked_by: str = MASKED_BY_VMS
) -> str:
    """What the file itself says about where it comes from (MP4 `comment` metadata)."""
    origin: dict[str, Any] = {
        "camera_id": camera_id,
        "start": start.isoformat(),
        "mask_plan_hash": mask_plan_hash,
    }
    if masked_by != MASKED_BY_VMS:
        origin["masked_by"] = masked_by
    return json.dumps({"vms": origin}, sort_keys=True)


class _Segment:
    """A segment file being written (`.partial` until finalised)."""

    final: Path
    partial: Path
    start: dt.datetime
    start_mono: float
    last_mono: float
    width: int
    height: int
    frames: int
    frame_step: float
    container: Any
    codec = "h264"

    def close(self) -> None:
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


class _RemuxSegment(_Segment):
    """The camera's own packets into an MP4, timestamps rebased to the segment's first packet;
    `last_mono` advances in stream time, so the segment's duration is the camera's."""

    def __init__(
        self, *, final: Path, start: dt.datetime, template: Any, metadata: str, fps_hint: float
    ) -> None:
        self.final = final
        self.partial = partial_path(final)
        self.start = start
        self.start_mono = self.last_mono = 0.0
        self.frames = 0
        self.frame_step = 1.0 / fps_hint
        self.width = int(template.codec_context.width)
        self.height = int(template.codec_context.height)
        self.codec = str(template.codec_context.name)
        self._first: int | None = None
        self._last_dts = -1
        final.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.partial), mode="w", format="mp4")
        try:
            self.container.metadata[PROVENANCE_KEY] = metadata
            self.stream: Any = self.container.add_stream_from_template(template)
        except BaseException:
            self.container.close()
            raise

    def mux(self, packet: av.Packet[Any]) -> None:
        pts = packet.pts if packet.pts is not None else packet.dts
        dts = packet.dts if packet.dts is not None else pts
        if pts is None or dts is None or packet.time_base is None:
            return  # a packet without time cannot be placed in the file
        if self._first is None:
            self._first = dts
        dts -= self._first
        pts -= self._first
        if dts <= self._last_dts:
            # The muxer needs strictly increasing decode times (a camera clock that stutters).
            shift = self._last_dts + 1 - dts
            dts, pts = dts + shift, pts + shift
        packet.dts, packet.pts = dts, pts
        packet.stream = self.stream
        self.container.mux(packet)
        self._last_dts = dts
        self.last_mono = float(pts * packet.time_base)
        self.frames += 1


class _OpenSegment(_Segment):
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
        threads: int,
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
            self.container.metadata[PROVENANCE_KEY] = metadata
            stream = self.container.add_stream(
                "libx264", rate=Fraction(fps_hint).limit_denominator(1001)
            )
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = _TIME_BASE
            stream.options = {"preset": preset, "crf": str(crf), "threads": str(threads)}
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


class SegmentRecorder:
    """Writes one camera's masked frames as segments of `segment_seconds`.

    `write` may raise DiskFull or RecorderError; the segment in progress is then discarded
    and nothing is indexed, and the recorder is ready to start a fresh segment later. A
    segment that is finished but cannot be indexed is kept (see the module docstring).
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
        threads: int = 1,
        fps_hint: float = 25.0,
        on_segment: Callable[[SegmentInfo], None] | None = None,
        masked_by: str = MASKED_BY_VMS,
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
        self.threads = threads
        self.fps_hint = fps_hint
        self.on_segment = on_segment
        self.masked_by = masked_by
        self.segments_written = 0
        self._seg: _Segment | None = None
        # Finalising (trailer, fsync, hash, rename, index) runs on one thread of its own, in
        # order: a slow disk or database commit must not stall the frames of the next segment.
        self._finaliser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finalise")
        self._pending: list[Future[Any]] = []
        # Finished, durable segments the index has not taken yet (oldest first); touched on the
        # finaliser thread only.
        self._unindexed: list[SegmentInfo] = []
        self.index_error: str | None = None

    @property
    def index_pending(self) -> int:
        """Finished segments on disk waiting for the index (the database did not answer)."""
        return len(self._unindexed)

    def retry_index(self) -> None:
        """Try the waiting segments again (on the finaliser thread, in order)."""
        if self._unindexed:
            self._pending.append(self._finaliser.submit(self._index_waiting))

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
        assert isinstance(seg, _OpenSegment)
        try:
            seg.encode(frame, mono)
        except (av.FFmpegError, OSError) as exc:
            self._seg = None
            _fail(seg, exc)

    @property
    def segment_seconds_so_far(self) -> float:
        """Stream time in the open segment (0 when none is open)."""
        seg = self._seg
        return seg.last_mono - seg.start_mono if seg is not None else 0.0

    def write_packet(self, packet: av.Packet[Any], template: Any, at: dt.datetime) -> None:
        """Add one of the camera's own packets (passthrough). A segment starts at a keyframe
        (earlier packets are not written: they would not decode); the caller ends segments with
        `finish`, because only it knows whether the masks were checked up to here.

        Raises DiskFull/RecorderError like `write`; the segment in progress is then discarded.
        """
        self.raise_failures()
        if self._seg is None:
            if not packet.is_keyframe:
                return
            self._seg = self._open_remux(template, at)
        seg = self._seg
        assert isinstance(seg, _RemuxSegment)
        try:
            seg.mux(packet)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._seg = None
            _fail(seg, exc)

    def finish(
        self, end: dt.datetime | None = None, *, wait: bool = True, state: str = OK
    ) -> SegmentInfo | None:
        """Finalise the segment in progress (if it has frames): durable, renamed, indexed in
        `state` (quarantined: a passthrough segment no passing mask check covers).

        `end` is where the next segment starts, when there is one. With `wait` this returns
        once every segment handed over so far is indexed (raising what failed), and gives the
        one it finished; without, failures surface at the next `write` or `raise_failures`.
        """
        seg, self._seg = self._seg, None
        job = self._finaliser.submit(self._finalise, seg, end, state) if seg is not None else None
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
        """Finalise what is open and stop the finalising thread. Segments the index has still
        not taken stay listed for the next worker of the camera (`recovery.recover`)."""
        try:
            self.finish()
            if self._unindexed:
                self._finaliser.submit(self._index_waiting).result()
        finally:
            self._finaliser.shutdown(wait=True)

    def _finalise(self, seg: _Segment, end: dt.datetime | None, state: str) -> SegmentInfo | None:
        if seg.frames == 0:
            seg.abandon()
            return None
        try:
            seg.close()
            fsync_file(seg.partial)
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
            codec=seg.codec,
            width=seg.width,
            height=seg.height,
            frames=seg.frames,
            state=state,
            masked_by=self.masked_by,
        )
        # The file is durable now: whatever the index says, it stays.
        self._index_waiting()
        if self._unindexed:
            self._wait_for_index(info, None)
        else:
            try:
                self.index.add(info)
            except SegmentRefused:
                self._refused(info)
                return None
            except Exception as exc:
                self._wait_for_index(info, exc)
            else:
                self.segments_written += 1
        if self.on_segment is not None:
            self.on_segment(info)
        return info

    def _wait_for_index(self, info: SegmentInfo, exc: Exception | None) -> None:
        self._unindexed.append(info)
        if exc is not None:
            self.index_error = f"{type(exc).__name__}"
            logger.error(
                "camera %s: indexing %s failed (%s); the segment is kept and indexed later",
                self.camera_id,
                info.path,
                type(exc).__name__,
            )
        write_pending(self.data_dir, self.camera_id, self._unindexed)

    def _index_waiting(self) -> None:
        """Index what waits, oldest first; stop at the first failure (the order is kept)."""
        if not self._unindexed:
            return
        done = 0
        for info in self._unindexed:
            try:
                self.index.add(info)
            except SegmentRefused:
                self._refused(info)
            except Exception as exc:
                self.index_error = f"{type(exc).__name__}"
                break
            else:
                self.segments_written += 1
            done += 1
        if done:
            self._unindexed = self._unindexed[done:]
            write_pending(self.data_dir, self.camera_id, self._unindexed)
            logger.info("camera %s: indexed %s segments that had waited", self.camera_id, done)
        if not self._unindexed:
            self.index_error = None

    def _refused(self, info: SegmentInfo) -> None:
        logger.error("camera %s: the index refused %s; removing it", self.camera_id, info.path)
        _unlink_quietly(self.data_dir / info.path)
        with contextlib.suppress(OSError):
            fsync_dir((self.data_dir / info.path).parent)

    def discard(self) -> None:
        """Drop the segment in progress without indexing it."""
        seg, self._seg = self._seg, None
        if seg is not None:
            seg.abandon()

    def _free_path(self, at: dt.datetime) -> tuple[dt.datetime, Path]:
        at = _to_ms(at)
        final = segment_path(self.data_dir, self.camera_id, at)
        while final.exists() or partial_path(final).exists():
            # Two segments in one millisecond (a restart): keep both.
            at += dt.timedelta(milliseconds=1)
            final = segment_path(self.data_dir, self.camera_id, at)
        return at, final

    def _open_remux(self, template: Any, at: dt.datetime) -> _RemuxSegment:
        at, final = self._free_path(at)
        try:
            return _RemuxSegment(
                final=final,
                start=at,
                template=template,
                metadata=provenance(self.camera_id, at, self.mask_plan_hash, self.masked_by),
                fps_hint=self.fps_hint,
            )
        except (av.FFmpegError, OSError, ValueError) as exc:
            _unlink_quietly(partial_path(final))
            raise _error_for(exc, str(final)) from None

    def _open(self, frame: av.VideoFrame, at: dt.datetime, mono: float) -> _OpenSegment:
        at, final = self._free_path(at)
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
                threads=self.threads,
                metadata=provenance(self.camera_id, at, self.mask_plan_hash),
            )
        except (av.FFmpegError, OSError) as exc:
            _unlink_quietly(partial_path(final))
            raise _error_for(exc, str(final)) from None


def to_ms(at: dt.datetime) -> dt.datetime:
    """`at` in UTC, to the millisecond: segment starts are (the file name carries them, so
    name, provenance and index agree), and so are the ends that meet them."""
    return at.astimezone(dt.UTC).replace(microsecond=at.microsecond // 1000 * 1000)


_to_ms = to_ms


def _fail(seg: _Segment, exc: BaseException) -> NoReturn:
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
