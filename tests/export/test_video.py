"""Cutting segments to a range: copied GOPs stay bit-identical, edges are re-encoded, and the
exported frames are exactly the source frames of the range, at their wall-clock offsets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.media import MadeSegment, decoded_frames, make_run, make_segment
from vms.export.video import CutError, SourceSegment, annexb_nals, contact_sheet, cut, parse_avcc

T0 = dt.datetime(2025, 3, 14, 9, 0, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)


def sources(made: list[MadeSegment]) -> list[SourceSegment]:
    return [SourceSegment(m.path, m.start) for m in made]


def expected(a: float, b: float, fps: int = 10, missing: range = range(0)) -> list[int]:
    return [i for i in range(0, 10_000) if a * fps <= i < b * fps and i not in missing]


def check_exact(out: Path, want: list[int], fps: int = 10) -> None:
    got = decoded_frames(out)
    assert [i for _, i in got] == want
    # Position in the video = wall-clock offset from the first exported frame (gaps included).
    assert [t for t, _ in got] == [round((i - want[0]) / fps, 3) for i in want]


def packet_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def test_keyframe_aligned_range_is_copied_bit_for_bit(tmp_path: Path) -> None:
    made = make_run(tmp_path, start=T0, segments=3, seconds=3)
    report = cut(sources(made), T0 + 1 * S, T0 + 6 * S, tmp_path / "out.mp4")
    assert report.method == "remux"
    assert (report.frames, report.reencoded_frames) == (50, 0)
    check_exact(tmp_path / "out.mp4", expected(1, 6))
    src = packet_payloads(made[0].path)[10:] + packet_payloads(made[1].path)[:30]
    assert packet_payloads(tmp_path / "out.mp4") == src
    assert report.first_frame_at == T0 + 1 * S
    assert report.last_frame_at == T0 + dt.timedelta(seconds=5.9)


def test_cut_inside_a_gop_reencodes_only_the_edge(tmp_path: Path) -> None:
    made = make_run(tmp_path, start=T0, segments=4, seconds=3)
    report = cut(sources(made), T0 + dt.timedelta(seconds=1.25), T0 + 11.55 * S, tmp_path / "o.mp4")
    assert report.method == "remux_with_reencoded_edges"
    # Head: frames 13..19 up to the next keyframe; the tail (no B-frames) is a copied prefix.
    assert report.reencoded_frames == 7
    assert report.reencoded_spans == [
        (T0 + dt.timedelta(seconds=1.3), T0 + dt.timedelta(seconds=1.9))
    ]
    check_exact(tmp_path / "o.mp4", expected(1.25, 11.55))


def test_b_frames_at_the_tail_are_reencoded(tmp_path: Path) -> None:
    made = make_run(tmp_path, start=T0, segments=2, seconds=3, bframes=2)
    report = cut(sources(made), T0, T0 + dt.timedelta(seconds=4.45), tmp_path / "o.mp4")
    # A B-frame stream cannot be cut by dropping packets: frames 40..44 are re-encoded.
    assert report.reencoded_frames == 5
    check_exact(tmp_path / "o.mp4", expected(0, 4.45))


def test_gap_keeps_its_length_in_the_video(tmp_path: Path) -> None:
    made = make_run(tmp_path, start=T0, segments=4, seconds=3, skip=frozenset({1}))
    cut(sources(made), T0 + 2 * S, T0 + 8 * S, tmp_path / "o.mp4")
    check_exact(tmp_path / "o.mp4", expected(2, 8, missing=range(30, 60)))


def test_segments_with_other_parameter_sets_and_overlap(tmp_path: Path) -> None:
    made = [
        make_segment(tmp_path / "a.mp4", start=T0, first_index=0, frames=30),
        make_segment(
            tmp_path / "b.mp4", start=T0 + 3 * S, first_index=30, frames=30, bframes=3, gop=15
        ),
        make_segment(tmp_path / "c.mp4", start=T0 + 6 * S, first_index=60, frames=30),
        # Overlaps c by 1.5 s (a restarted recorder): the overlap must not appear twice.
        make_segment(tmp_path / "d.mp4", start=T0 + 7.5 * S, first_index=75, frames=30),
    ]
    configs = [parse_avcc(_extradata(m.path)) for m in made[:2]]
    first_sps = {c.parameter_sets[0] for c in configs if c is not None}
    assert len(first_sps) == 2, "the test needs segments with different SPS"
    report = cut(sources(made), T0 + dt.timedelta(seconds=0.35), T0 + 10.05 * S, tmp_path / "o.mp4")
    check_exact(tmp_path / "o.mp4", expected(0.35, 10.05))
    assert report.remuxed_frames > 0
    assert report.reencoded_frames > 0


def test_other_resolution_is_reencoded_to_the_track_size(tmp_path: Path) -> None:
    made = [
        make_segment(tmp_path / "a.mp4", start=T0, first_index=0, frames=20),
        make_segment(
            tmp_path / "b.mp4", start=T0 + 2 * S, first_index=20, frames=20, size=(640, 480)
        ),
    ]
    report = cut(sources(made), T0, T0 + 4 * S, tmp_path / "o.mp4")
    assert report.frames == 40
    assert report.reencoded_frames == 20
    assert "640x480" in report.notes[0]
    with av.open(str(tmp_path / "o.mp4")) as c:
        sizes = {(f.width, f.height) for f in c.decode(video=0)}
    assert sizes == {(320, 240)}


def test_no_frames_in_range(tmp_path: Path) -> None:
    made = make_run(tmp_path, start=T0, segments=1, seconds=2)
    with pytest.raises(CutError, match="no frames in the requested range"):
        cut(sources(made), T0 + 5 * S, T0 + 9 * S, tmp_path / "o.mp4")


def test_non_h264_segments_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(CutError, match=r"not H\.264"):
        cut([SourceSegment(path, T0)], T0, T0 + S, tmp_path / "o.mp4")


def test_annexb_split() -> None:
    data = b"\x00\x00\x00\x01\x67abc\x00\x00\x01\x68de\x00\x00\x00\x01\x65fgh\x00"
    assert annexb_nals(data) == [b"\x67abc", b"\x68de", b"\x65fgh"]


def test_contact_sheet_every_n_seconds(tmp_path: Path) -> None:
    made = make_run(tmp_path, start=T0, segments=2, seconds=5)
    cut(sources(made), T0, T0 + 10 * S, tmp_path / "o.mp4")
    sheet = contact_sheet(tmp_path / "o.mp4", first_frame_at=T0, title="t", interval_seconds=2.5)
    assert (sheet.thumbnails, sheet.interval_seconds) == (4, 2.5)
    img = cv2.imdecode(np.frombuffer(sheet.png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    assert img.shape[1] > 4 * 320
    capped = contact_sheet(
        tmp_path / "o.mp4", first_frame_at=T0, title="t", interval_seconds=0.1, max_thumbnails=5
    )
    assert capped.thumbnails <= 5
    assert capped.interval_seconds == pytest.approx(2.0)


def _extradata(path: Path) -> bytes:
    with av.open(str(path)) as c:
        data = c.streams.video[0].codec_context.extradata
        assert data is not None
        return data
