"""The recorder's passthrough half: a camera's packets remuxed into segments as they come
(no decode, no encode), starting at keyframes, indexed in the state the caller gives, and a
camera-masked file found without its row after a crash indexed quarantined."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from tests.peers.rtsp import SampleClips
from tests.pipeline.test_recorder import Crash, MemoryIndex
from vms.pipeline.recorder import (
    MASKED_BY_CAMERA,
    OK,
    PROVENANCE_KEY,
    QUARANTINED,
    SegmentRecorder,
    to_ms,
)
from vms.pipeline.recovery import recover

pytestmark = pytest.mark.nodb

T0 = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def camera_stream(sample_clips: SampleClips, tmp_path: Path) -> Iterator[tuple[Any, list[Any]]]:
    """What a camera sends: real footage as H.264 (keyframe every 25 frames, 25 fps, no
    B-frames), demuxed into packets with their stream (the template a segment is made from)."""
    path = tmp_path / "camera.ts"
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "25", "bf": "0", "sc_threshold": "0"}
        with av.open(str(sample_clips.real_360), format="h264") as src:
            for n, frame in enumerate(src.decode(video=0)):
                if n >= 75:
                    break
                frame.pts, frame.time_base = n, Fraction(1, 25)
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        yield video, [p for p in container.demux(video) if p.size]


def recorder(data_dir: Path, index: MemoryIndex) -> SegmentRecorder:
    return SegmentRecorder(
        camera_id=3,
        data_dir=data_dir,
        segment_seconds=1.0,
        mask_plan_hash="cd" * 32,
        index=index,
        masked_by=MASKED_BY_CAMERA,
    )


def at(packet: av.Packet[Any]) -> dt.datetime:
    assert packet.pts is not None
    return T0 + dt.timedelta(seconds=float(packet.pts * packet.time_base))


def write_gops(rec: SegmentRecorder, stream: Any, packets: list[av.Packet[Any]],
               states: Iterator[str]) -> None:  # fmt: skip
    """Feed packets, ending a segment at every keyframe after the first (as the worker does
    after a passing check), in the states given."""
    for p in packets:
        if p.is_keyframe and rec.is_open:
            rec.finish(end=to_ms(at(p)), wait=False, state=next(states))
        rec.write_packet(p, stream, at(p))
    rec.finish(state=next(states))


def test_packets_are_remuxed_into_segments_that_start_at_keyframes(
    camera_stream: tuple[Any, list[Any]], data_dir: Path
) -> None:
    stream, packets = camera_stream
    keyframes = sum(p.is_keyframe for p in packets)
    assert keyframes == 3
    index = MemoryIndex()
    rec = recorder(data_dir, index)
    # A packet before the first keyframe cannot start a segment (it would not decode).
    first_p = next(p for p in packets if not p.is_keyframe)
    rec.write_packet(first_p, stream, T0)
    assert not rec.is_open
    write_gops(rec, stream, packets, iter([OK, QUARANTINED, OK]))
    rec.close()
    infos = sorted(index.rows.values(), key=lambda i: i.start)
    assert [i.state for i in infos] == [OK, QUARANTINED, OK]
    assert {i.masked_by for i in infos} == {MASKED_BY_CAMERA}
    assert [i.frames for i in infos] == [25, 25, 25]
    for a, b in itertools.pairwise(infos):
        assert a.end == b.start  # segments tile time
    for info in infos:
        assert info.end - info.start == dt.timedelta(seconds=1)
        with av.open(str(data_dir / info.path)) as c:
            meta = json.loads(c.metadata[PROVENANCE_KEY])["vms"]
            decoded = list(c.decode(video=0))
        assert meta["masked_by"] == MASKED_BY_CAMERA
        assert len(decoded) == 25
        assert decoded[0].key_frame
    # The camera's own pictures, bit for bit: remuxed, not re-encoded.
    ctx = av.CodecContext.create("h264", "r")
    ctx.extradata = stream.codec_context.extradata
    original = [f for p in packets[25:50] for f in ctx.decode(p)] + list(ctx.decode(None))
    with av.open(str(data_dir / infos[1].path)) as c:
        remuxed = list(c.decode(video=0))
    assert len(original) == len(remuxed) == 25
    for mine, theirs in zip(original, remuxed, strict=True):
        assert bytes(mine.planes[0]) == bytes(theirs.planes[0])


def test_a_camera_masked_file_found_without_its_row_is_indexed_quarantined(
    camera_stream: tuple[Any, list[Any]], data_dir: Path
) -> None:
    stream, all_packets = camera_stream
    packets = all_packets[:50]
    index = MemoryIndex()
    rec = recorder(data_dir, index)
    for p in packets[:25]:
        rec.write_packet(p, stream, at(p))
    rec.finish(state=OK)
    for p in packets[25:]:
        rec.write_packet(p, stream, at(p))
    index.fail = Crash()
    with pytest.raises(Crash):
        rec.finish(state=OK)  # renamed, then "killed" before the commit
    index.fail = None
    (indexed,) = index.rows.values()
    result = recover(data_dir=data_dir, camera_id=3, index=index)
    (found,) = result.indexed
    assert found.path != indexed.path
    # Whether a passing check covered it died with the worker: never playable unseen.
    assert (found.state, found.masked_by) == (QUARANTINED, MASKED_BY_CAMERA)
    assert found.frames == 25
    assert index.rows[indexed.path].state == OK
