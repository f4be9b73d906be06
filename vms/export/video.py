"""Cut a camera's segments to a time range as one MP4, and draw a contact sheet of it.

Whole GOPs inside the range are copied bit for bit (remux): the exported pixels are exactly the
recorded, masked ones. Only a GOP the range cuts into (the edges, or a segment overlapping one
already written) is decoded and re-encoded, and only the frames inside the range are kept. Each
re-encoded run starts with an IDR frame carrying its own SPS/PPS, and the copied GOP after it gets
its segment's SPS/PPS back in-band, so every GOP decodes with the parameter sets it was made with.

Time in the output: the first frame is at 0 and a frame's position is its wall-clock offset from
that first frame, so a gap in the recording stays a gap in time (the previous frame lasts longer)
instead of silently shortening the video.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import cv2
import numpy as np
from av.packet import Packet
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

OUT_TIME_BASE = Fraction(1, 90000)
EDGE_CRF = "18"  # edges are evidence too: keep them visually lossless-ish
THUMB_WIDTH = 320
SHEET_COLUMNS = 4
MAX_THUMBNAILS = 120


class CutError(Exception):
    """The segments cannot be cut into a video (unreadable file, unsupported format)."""


@dataclass(frozen=True)
class SourceSegment:
    path: Path
    start: dt.datetime  # wall-clock time of the segment's first frame


@dataclass
class CutReport:
    frames: int = 0
    remuxed_frames: int = 0
    reencoded_frames: int = 0
    # Wall-clock [first, last] frame times of each re-encoded run.
    reencoded_spans: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)
    first_frame_at: dt.datetime | None = None
    last_frame_at: dt.datetime | None = None
    width: int = 0
    height: int = 0
    skipped_undecodable: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        if self.reencoded_frames == 0:
            return "remux"
        if self.remuxed_frames == 0:
            return "reencode"
        return "remux_with_reencoded_edges"


def _us(delta: dt.timedelta) -> Fraction:
    return Fraction(delta // dt.timedelta(microseconds=1), 1_000_000)


def _at(base: dt.datetime, seconds: Fraction) -> dt.datetime:
    return base + dt.timedelta(microseconds=round(seconds * 1_000_000))


# --- H.264 framing --------------------------------------------------------------------------


@dataclass(frozen=True)
class AvcConfig:
    """What matters of an `avcC` record: NAL length size and the parameter sets."""

    length_size: int
    parameter_sets: tuple[bytes, ...]


def parse_avcc(extradata: bytes | None) -> AvcConfig | None:
    """The avcC record MP4 keeps in the sample entry; None if `extradata` is not one."""
    if not extradata or len(extradata) < 7 or extradata[0] != 1:
        return None
    length_size = (extradata[4] & 0x03) + 1
    sets: list[bytes] = []
    pos = 5
    try:
        for count_mask in (0x1F, 0xFF):
            count = extradata[pos] & count_mask
            pos += 1
            for _ in range(count):
                n = int.from_bytes(extradata[pos : pos + 2], "big")
                pos += 2
                if pos + n > len(extradata):
                    return None
                sets.append(extradata[pos : pos + n])
                pos += n
    except IndexError:
        return None
    return AvcConfig(length_size, tuple(sets))


def annexb_nals(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream (what libx264 emits) into NAL units."""
    starts: list[tuple[int, int]] = []  # (start code position, payload position)
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append((i, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    nals = []
    for k, (_, payload) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(data)
        nal = data[payload:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
    return nals


def length_prefixed(nals: Sequence[bytes], length_size: int) -> bytes:
    return b"".join(len(n).to_bytes(length_size, "big") + n for n in nals)


# --- the cutter -----------------------------------------------------------------------------


@dataclass
class _Pkt:
    packet: Packet[VideoStream]
    rel: Fraction  # wall-clock seconds from the range start (presentation time)


@dataclass
class _Segment:
    source: SourceSegment
    stream: VideoStream
    offset: Fraction  # segment start - range start, seconds
    zero_pts: int
    avc: AvcConfig | None
    compatible: bool  # may be copied into the output track as it is


class _Cutter:
    def __init__(
        self,
        out: av.container.OutputContainer,
        range_start: dt.datetime,
        duration: Fraction,
        report: CutReport,
    ) -> None:
        self.out = out
        self.range_start = range_start
        self.duration = duration
        self.report = report
        self.stream: VideoStream | None = None
        self.avc: AvcConfig | None = None
        self.out_zero: Fraction | None = None
        self.written_until: Fraction = Fraction(0)  # frames before this are in the output
        self.last_dts: int | None = None
        self.active_parameter_sets: tuple[bytes, ...] = ()
        self.fps = Fraction(25)
        self.out_tb = OUT_TIME_BASE

    # The first H.264 segment fixes the output track (codec, size, NAL length size).
    def open_output(self, seg_stream: VideoStream, avc: AvcConfig) -> None:
        stream = self.out.add_stream_from_template(seg_stream)
        stream.time_base = OUT_TIME_BASE
        self.out.start_encoding()
        # The muxer may pick its own timescale when it writes the header: read it back.
        if stream.time_base is None:
            raise CutError("the MP4 muxer set no time base")
        self.out_tb = stream.time_base
        self.stream = stream
        self.avc = avc
        self.active_parameter_sets = avc.parameter_sets
        self.report.width, self.report.height = seg_stream.width, seg_stream.height
        rate = seg_stream.average_rate or seg_stream.guessed_rate
        if rate:
            self.fps = Fraction(rate)

    def in_range(self, rel: Fraction) -> bool:
        return self.written_until <= rel < self.duration

    def out_ts(self, rel: Fraction) -> int:
        assert self.out_zero is not None
        assert self.stream is not None
        return round((rel - self.out_zero) / self.out_tb)

    def note_frame(self, rel: Fraction) -> None:
        if self.out_zero is None:
            self.out_zero = rel
        self.report.frames += 1
        at = _at(self.range_start, rel)
        if self.report.first_frame_at is None:
            self.report.first_frame_at = at
        self.report.last_frame_at = at
        self.written_until = max(self.written_until, rel + Fraction(1, 1_000_000))

    def mux(self, packet: Packet[Any], pts: int, dts: int, duration: int | None) -> None:
        assert self.stream is not None
        if self.last_dts is not None and dts <= self.last_dts:
            dts = self.last_dts + 1
        pts = max(pts, dts)
        packet.stream = self.stream
        packet.time_base = self.out_tb
        packet.pts, packet.dts = pts, dts
        if duration is not None:
            packet.duration = duration
        self.last_dts = dts
        self.out.mux_one(packet)

    # -- GOPs --

    def gop(self, seg: _Segment, pkts: list[_Pkt]) -> None:
        keep = [self.in_range(p.rel) for p in pkts]
        if not any(keep):
            return
        reordered = any(b.rel <= a.rel for a, b in itertools.pairwise(pkts))
        n = sum(keep)
        prefix = all(keep[:n]) and not any(keep[n:])
        if (
            seg.compatible
            and pkts[0].packet.is_keyframe
            and (n == len(pkts) or (prefix and not reordered))
        ):
            self.remux(seg, pkts[:n])
        else:
            self.reencode(seg, pkts)

    def remux(self, seg: _Segment, pkts: list[_Pkt]) -> None:
        assert self.stream is not None
        assert self.avc is not None
        assert seg.avc is not None
        if self.out_zero is None:
            self.out_zero = min(p.rel for p in pkts)
        tb = seg.stream.time_base
        assert tb is not None
        for i, item in enumerate(pkts):
            src = item.packet
            assert src.pts is not None
            packet: Packet[Any] = src
            if i == 0 and seg.avc.parameter_sets != self.active_parameter_sets:
                # The decoder still holds another run's SPS/PPS: hand it this segment's again.
                prefix = length_prefixed(seg.avc.parameter_sets, self.avc.length_size)
                packet = Packet(prefix + bytes(src))
                packet.is_keyframe = True
                self.active_parameter_sets = seg.avc.parameter_sets
            pts = self.out_ts(item.rel)
            delay = (src.pts - src.dts) if src.dts is not None else 0
            dts = pts - round(delay * tb / self.out_tb)
            duration = round(src.duration * tb / self.out_tb) if src.duration else None
            self.mux(packet, pts, dts, duration)
        for item in sorted(pkts, key=lambda p: p.rel):
            self.note_frame(item.rel)
        self.report.remuxed_frames += len(pkts)

    def reencode(self, seg: _Segment, pkts: list[_Pkt]) -> None:
        assert self.stream is not None
        assert self.avc is not None
        frames = [(rel, f) for rel, f in self.decode(seg, pkts) if self.in_range(rel)]
        if not frames:
            return
        frames.sort(key=lambda x: x[0])
        if self.out_zero is None:
            self.out_zero = frames[0][0]
        enc = cast(Any, av.CodecContext.create("libx264", "w"))
        enc.width, enc.height = self.report.width, self.report.height
        enc.pix_fmt = "yuv420p"
        enc.time_base = self.out_tb
        enc.framerate = self.fps
        # No B-frames: decode order = presentation order, so the run slots in between copied
        # GOPs without reordering; one IDR at the start (keyint larger than any edge).
        enc.options = {
            "preset": "veryfast",
            "crf": EDGE_CRF,
            "x264-params": "bframes=0:scenecut=0:keyint=100000",
        }
        encoded: list[Packet[Any]] = []
        for rel, frame in frames:
            img = frame
            if (frame.width, frame.height) != (enc.width, enc.height) or frame.format.name != (
                "yuv420p"
            ):
                img = frame.reformat(width=enc.width, height=enc.height, format="yuv420p")
            img.pts = self.out_ts(rel)
            img.time_base = self.out_tb
            img.pict_type = PictureType.NONE
            encoded.extend(enc.encode(img))
        encoded.extend(enc.encode(None))
        for packet in encoded:
            assert packet.pts is not None
            data = length_prefixed(annexb_nals(bytes(packet)), self.avc.length_size)
            out = Packet(data)
            out.is_keyframe = packet.is_keyframe
            dts = packet.dts if packet.dts is not None else packet.pts
            self.mux(out, packet.pts, dts, packet.duration)
        self.active_parameter_sets = ()  # the run put its own in-band
        for rel, _ in frames:
            self.note_frame(rel)
        self.report.reencoded_frames += len(frames)
        self.report.reencoded_spans.append(
            (_at(self.range_start, frames[0][0]), _at(self.range_start, frames[-1][0]))
        )

    def decode(self, seg: _Segment, pkts: list[_Pkt]) -> Iterator[tuple[Fraction, VideoFrame]]:
        ctx = seg.stream.codec_context
        tb = seg.stream.time_base
        assert tb is not None
        if not pkts[0].packet.is_keyframe:
            # A GOP without its keyframe (a damaged or truncated segment) cannot be decoded.
            self.report.skipped_undecodable += len(pkts)
            logger.warning("%s: %d packets without a keyframe skipped", seg.source.path, len(pkts))
            return
        frames: list[VideoFrame] = []
        for item in pkts:
            frames.extend(ctx.decode(item.packet))
        frames.extend(ctx.decode(None))
        ctx.flush_buffers()
        for frame in frames:
            if frame.pts is None:
                continue
            yield seg.offset + (frame.pts - seg.zero_pts) * tb, frame


def cut(
    segments: Sequence[SourceSegment],
    start: dt.datetime,
    end: dt.datetime,
    out_path: Path,
    progress: Callable[[int, int], None] | None = None,
) -> CutReport:
    """Write the frames of `segments` (ordered by start) in [start, end) to `out_path` (MP4)."""
    if end <= start:
        raise CutError("the range ends before it starts")
    report = CutReport()
    duration = _us(end - start)
    ordered = sorted(segments, key=lambda s: s.start)
    with av.open(str(out_path), "w", format="mp4") as out:
        cutter = _Cutter(out, start, duration, report)
        for i, source in enumerate(ordered):
            if progress is not None:
                progress(i, len(ordered))
            if _us(source.start - start) >= duration:
                break
            _cut_segment(cutter, source, start)
        if progress is not None:
            progress(len(ordered), len(ordered))
        if cutter.stream is None or report.frames == 0:
            raise CutError("no frames in the requested range")
    return report


def _cut_segment(cutter: _Cutter, source: SourceSegment, range_start: dt.datetime) -> None:
    try:
        container = av.open(str(source.path))
    except (av.FFmpegError, OSError) as exc:
        raise CutError(f"cannot open segment {source.path.name}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise CutError(f"segment {source.path.name} has no video")
        stream = container.streams.video[0]
        avc = parse_avcc(stream.codec_context.extradata)
        if cutter.stream is None:
            if stream.codec_context.name != "h264" or avc is None:
                raise CutError(
                    f"segment {source.path.name} is not H.264 in MP4 "
                    f"(codec {stream.codec_context.name}); the exporter copies H.264 only"
                )
            cutter.open_output(stream, avc)
        assert cutter.avc is not None
        compatible = (
            stream.codec_context.name == "h264"
            and avc is not None
            and avc.length_size == cutter.avc.length_size
            and (stream.width, stream.height) == (cutter.report.width, cutter.report.height)
        )
        if not compatible:
            cutter.report.notes.append(
                f"segment {source.path.name} ({stream.codec_context.name} {stream.width}x"
                f"{stream.height}) differs from the output track; its frames in the range were "
                f"re-encoded at {cutter.report.width}x{cutter.report.height}"
            )
        tb = stream.time_base
        if tb is None:
            raise CutError(f"segment {source.path.name} has no time base")
        zero = stream.start_time
        seg: _Segment | None = None
        gop: list[_Pkt] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                if seg is None:
                    seg = _Segment(
                        source=source,
                        stream=stream,
                        offset=_us(source.start - range_start),
                        zero_pts=zero if zero is not None else packet.pts,
                        avc=avc,
                        compatible=compatible,
                    )
                rel = seg.offset + (packet.pts - seg.zero_pts) * tb
                if packet.is_keyframe and gop:
                    cutter.gop(seg, gop)
                    gop = []
                    if rel >= cutter.duration:
                        return
                gop.append(_Pkt(packet, rel))
            if seg is not None and gop:
                cutter.gop(seg, gop)
        except av.FFmpegError as exc:
            raise CutError(f"cannot read segment {source.path.name}: {exc}") from exc


# --- contact sheet --------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactSheet:
    png: bytes
    interval_seconds: float
    thumbnails: int


def contact_sheet(
    video: Path,
    *,
    first_frame_at: dt.datetime,
    title: str,
    interval_seconds: float = 10.0,
    max_thumbnails: int = MAX_THUMBNAILS,
) -> ContactSheet:
    """A PNG grid of frames of `video` every `interval_seconds` (widened to stay under
    `max_thumbnails`), each labelled with its wall-clock time in UTC."""
    thumbs: list[tuple[dt.datetime, np.ndarray]] = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        assert tb is not None
        duration = (
            float(stream.duration * tb) if stream.duration else float(container.duration or 0) / 1e6
        )
        interval = max(interval_seconds, duration / max_thumbnails if duration else 0.0)
        next_mark = 0.0
        zero: int | None = None
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            zero = frame.pts if zero is None else zero
            t = float((frame.pts - zero) * tb)
            if t + 1e-6 < next_mark:
                continue
            rgb = frame.to_ndarray(format="bgr24")
            h = round(rgb.shape[0] * THUMB_WIDTH / rgb.shape[1])
            small = cv2.resize(rgb, (THUMB_WIDTH, h), interpolation=cv2.INTER_AREA)
            thumbs.append((first_frame_at + dt.timedelta(seconds=t), small))
            next_mark = (math.floor(t / interval) + 1) * interval
    if not thumbs:
        raise CutError(f"{video.name} has no frames for a contact sheet")
    return ContactSheet(_grid(thumbs, title), interval, len(thumbs))


def _grid(thumbs: list[tuple[dt.datetime, np.ndarray]], title: str) -> bytes:
    font = cv2.FONT_HERSHEY_SIMPLEX
    label_h, pad, title_h = 22, 6, 34
    th = max(img.shape[0] for _, img in thumbs)
    cols = min(SHEET_COLUMNS, len(thumbs))
    rows = math.ceil(len(thumbs) / cols)
    cell_w, cell_h = THUMB_WIDTH + pad, th + label_h + pad
    sheet = np.full((title_h + rows * cell_h + pad, cols * cell_w + pad, 3), 255, np.uint8)
    cv2.putText(sheet, title[:110], (pad, 24), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (at, img) in enumerate(thumbs):
        r, c = divmod(i, cols)
        x, y = pad + c * cell_w, title_h + r * cell_h
        sheet[y : y + img.shape[0], x : x + img.shape[1]] = img
        label = at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"
        cv2.putText(sheet, label, (x, y + th + 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise CutError("could not encode the contact sheet")
    return bytes(buf.tobytes())
