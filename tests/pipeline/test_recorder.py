"""The segment recorder and crash recovery on real files (frames made with PyAV in the test),
and the shared-memory live channel across a real process boundary."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from retention.paths import parse_relative
from tests.pipeline.disk import tiny_tmpfs
from vms.pipeline.live import PREVIEW_RAW, LiveChannel
from vms.pipeline.recorder import (
    DiskFull,
    SegmentInfo,
    SegmentRecorder,
    SegmentRefused,
    pending_index_path,
    read_pending,
)
from vms.pipeline.recovery import recover

pytestmark = pytest.mark.nodb

T0 = dt.datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
FPS = 25


class MemoryIndex:
    def __init__(self) -> None:
        self.rows: dict[str, SegmentInfo] = {}
        self.fail: BaseException | None = None

    def add(self, info: SegmentInfo) -> None:
        if self.fail is not None:
            raise self.fail
        self.rows[info.path] = info

    def indexed_paths(self, camera_id: int, start: dt.datetime, end: dt.datetime) -> set[str]:
        return {
            p for p, i in self.rows.items() if i.camera_id == camera_id and start <= i.start < end
        }


class Crash(BaseException):
    """Stands in for SIGKILL at a chosen point: no `except Exception` handler sees it."""


def frames(
    n: int, size: tuple[int, int] = (160, 96), noise: bool = False
) -> Iterator[av.VideoFrame]:
    w, h = size
    rng = np.random.default_rng(0)
    for i in range(n):
        if noise:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        else:
            img = np.full((h, w, 3), (i * 7) % 256, dtype=np.uint8)
            img[:, (i * 3) % w] = 255
        yield av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")


def feed(rec: SegmentRecorder, count: int, start: int = 0, **kw: object) -> None:
    for i, frame in enumerate(frames(count, **kw), start=start):  # type: ignore[arg-type]
        rec.write(frame, T0 + dt.timedelta(seconds=i / FPS), 100.0 + i / FPS)


def recorder(data_dir: Path, index: MemoryIndex, seconds: float = 1.0) -> SegmentRecorder:
    return SegmentRecorder(
        camera_id=7,
        data_dir=data_dir,
        segment_seconds=seconds,
        mask_plan_hash="ab" * 32,
        index=index,
        fps_hint=FPS,
    )


def test_segments_are_complete_hashed_renamed_and_indexed(data_dir: Path) -> None:
    index = MemoryIndex()
    rec = recorder(data_dir, index)
    feed(rec, 62)  # 2.48 s at 25 fps
    last = rec.finish()
    done = list(index.rows.values())
    assert done[-1] == last
    assert [d.frames for d in done] == [25, 25, 12]
    assert list(index.rows) == [d.path for d in done]
    assert not list(data_dir.rglob("*.partial"))
    for i, info in enumerate(done):
        path = data_dir / info.path
        parsed = parse_relative(info.path)
        assert parsed is not None
        assert (parsed.camera_id, parsed.start) == (7, info.start)
        assert info.start == T0.replace(microsecond=123000) + dt.timedelta(seconds=i)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info.sha256
        assert info.size_bytes == path.stat().st_size
        assert info.end - info.start == dt.timedelta(seconds=info.frames / FPS)
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            packets = [p for p in c.demux(stream) if p.size]
            meta = json.loads(c.metadata["comment"])["vms"]
        assert len(packets) == info.frames
        assert packets[0].is_keyframe  # every segment plays on its own
        assert meta == {
            "camera_id": 7,
            "start": info.start.isoformat(),
            "mask_plan_hash": "ab" * 32,
        }
    # Segments tile time: each starts where the one before it ended.
    assert [d.start for d in done[1:]] == [d.end for d in done[:-1]]
    rec.close()


def test_resolution_change_starts_a_new_segment(data_dir: Path) -> None:
    index = MemoryIndex()
    rec = recorder(data_dir, index, seconds=10)
    feed(rec, 5)
    feed(rec, 5, start=5, size=(128, 72))
    rec.finish()
    done = list(index.rows.values())
    assert [(d.width, d.height, d.frames) for d in done] == [(160, 96, 5), (128, 72, 5)]


def test_a_segment_the_index_refuses_is_kept_and_indexed_later(data_dir: Path) -> None:
    """The database busy or down must never cost footage: the finished file stays, is listed
    as pending (fsynced), waits in order, and is indexed once the index answers again, by this
    recorder or, after it stopped, by the next worker's recovery."""
    index = MemoryIndex()
    rec = recorder(data_dir, index)
    feed(rec, 30)
    rec.drain()
    index.fail = RuntimeError("database is locked")
    feed(rec, 50, start=30)  # two more segments finish while the index is down
    rec.drain()
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.mp4"))
    assert len(files) == 3
    assert len(index.rows) == 1
    assert rec.index_pending == 2
    assert rec.index_error == "RuntimeError"
    pending = read_pending(data_dir, 7)
    assert [p.path for p in pending] == files[1:]
    index.fail = None
    rec.retry_index()
    rec.drain()
    assert rec.index_pending == 0
    assert sorted(index.rows) == files
    assert not pending_index_path(data_dir, 7).exists()
    # Down again when the recorder stops: the list outlives it, the next worker indexes it.
    index.fail = RuntimeError("database is locked")
    feed(rec, 10, start=80)
    rec.close()
    left = read_pending(data_dir, 7)
    assert left
    index.fail = None
    result = recover(data_dir=data_dir, camera_id=7, index=index)
    assert result.indexed == left
    assert sorted(index.rows) == sorted(
        p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.mp4")
    )
    assert not pending_index_path(data_dir, 7).exists()


def test_recovery_discards_partials_and_indexes_a_file_that_missed_its_row(
    data_dir: Path,
) -> None:
    index = MemoryIndex()
    rec = recorder(data_dir, index)
    feed(rec, 30)  # one indexed segment, a second one open
    rec.drain()  # the first segment is finalised on another thread
    kept = dict(index.rows)
    index.fail = Crash()
    with pytest.raises(Crash):
        rec.finish()  # renamed, then "killed" before the commit
    orphan = next(
        p for p in data_dir.rglob("*.mp4") if p.relative_to(data_dir).as_posix() not in kept
    )
    index.fail = None
    rec2 = recorder(data_dir, index)
    feed(rec2, 10, start=100)  # a writer killed mid-segment leaves a .partial
    del rec2
    partials = list(data_dir.rglob("*.partial"))
    assert len(partials) == 1

    result = recover(data_dir=data_dir, camera_id=7, index=index)

    assert [p for p, _ in result.discarded] == [partials[0].relative_to(data_dir).as_posix()]
    assert not partials[0].exists()
    assert [i.path for i in result.indexed] == [orphan.relative_to(data_dir).as_posix()]
    info = result.indexed[0]
    assert info.mask_plan_hash == "ab" * 32
    assert info.frames == 5
    assert info.sha256 == hashlib.sha256(orphan.read_bytes()).hexdigest()
    on_disk = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file()}
    assert on_disk == set(index.rows)
    # Running it again changes nothing.
    again = recover(data_dir=data_dir, camera_id=7, index=index)
    assert (again.discarded, again.indexed) == ([], [])


def test_recovery_leaves_files_that_are_not_ours(data_dir: Path) -> None:
    index = MemoryIndex()
    rec = recorder(data_dir, index)
    feed(rec, 30)
    rec.drain()
    rec.discard()
    stray = next(iter(index.rows))
    index.rows.clear()  # a file whose provenance is fine, but the row is...
    (data_dir / stray).write_bytes(b"not an mp4")  # ...and now it is not even a video
    result = recover(data_dir=data_dir, camera_id=7, index=index)
    assert result.indexed == []
    assert (data_dir / stray).exists()  # left for the retention check to report


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 kB tmpfs: a real disk-full (ENOSPC), not a simulated one."""
    with tiny_tmpfs(tmp_path / "tiny", "600k") as mount:
        yield mount


def test_disk_full_discards_the_partial_and_keeps_what_is_indexed(tiny_disk: Path) -> None:
    index = MemoryIndex()
    rec = recorder(tiny_disk, index, seconds=0.2)
    with pytest.raises(DiskFull):
        feed(rec, 400, noise=True)
    with contextlib.suppress(DiskFull):
        rec.finish()  # let segments handed to the finalising thread settle
    assert index.rows, "some segments should have fitted"
    assert not list(tiny_disk.rglob("*.partial"))
    for path, info in index.rows.items():
        assert hashlib.sha256((tiny_disk / path).read_bytes()).hexdigest() == info.sha256
    # The recorder can start again once there is room.
    for path in list(index.rows)[:-1]:
        os.unlink(tiny_disk / path)
    feed(rec, 3, start=1000)
    assert rec.finish() is not None
    rec.close()


# -- live channel ---------------------------------------------------------------------------------


def _worker_side(name: str, conn: object) -> None:
    live = LiveChannel.attach(name)
    viewers = live.viewers
    live.publish(b"\xff\xd8jpeg\xff\xd9", 640, 360, 1234.5)
    request = live.pending_preview()
    if request is not None:
        live.publish_preview(request[0], b"png-" + bytes([request[1]]), 640, 360)
    live.close()
    conn.send(viewers)  # type: ignore[attr-defined]


def test_live_channel_across_processes() -> None:
    channel = LiveChannel.create()
    try:
        assert channel.latest() is None
        ctx = multiprocessing.get_context("spawn")
        recv, send = ctx.Pipe(duplex=False)
        request = channel.request_preview(PREVIEW_RAW)
        with channel.viewer():
            p = ctx.Process(target=_worker_side, args=(channel.name, send))
            p.start()
            assert recv.recv() == 1
            p.join(10)
        assert p.exitcode == 0
        assert channel.viewers == 0
        image = channel.latest()
        assert image is not None
        assert (image.data, image.width, image.height, image.at) == (
            b"\xff\xd8jpeg\xff\xd9",
            640,
            360,
            1234.5,
        )
        assert channel.latest(after_seq=image.seq) is None
        preview = channel.preview(request)
        assert preview is not None
        assert preview.data == b"png-\x02"
        assert not Path("/dev/shm", channel.name.lstrip("/")).is_symlink()
    finally:
        channel.close()
    assert not Path("/dev/shm", channel.name.lstrip("/")).exists()


def test_a_segment_the_index_refuses_for_good_is_removed_not_kept(data_dir: Path) -> None:
    """`SegmentRefused` (the cluster's lease taken over) is not a database outage: the file is
    removed and never listed as pending, so no later worker indexes footage of a time the
    camera's new holder records."""
    index = MemoryIndex()
    rec = recorder(data_dir, index)
    feed(rec, 30)
    rec.drain()
    index.fail = SegmentRefused("lease taken over")
    feed(rec, 30, start=30)
    rec.drain()
    files = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.mp4"))
    assert files == sorted(index.rows)
    assert len(files) == 1
    assert rec.index_pending == 0
    assert not pending_index_path(data_dir, 7).exists()
