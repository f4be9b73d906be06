#!/usr/bin/python3
"""A test camera that draws ONVIF privacy masks into its H.264 stream, like a real camera does.

Run with Debian's interpreter (`gi` only imports there); no project imports.

    /usr/bin/python3 sample_streams/masking_camera.py --source clip.h264 --size 640x360

It loops an Annex-B H.264 clip (or `--pattern smpte`: videotestsrc), decodes it, fills the
configured mask polygons with their solid colour in the decoded YUV planes and encodes again with
x264 (no B-frames, a keyframe every `--keyint` frames, paced at `--fps`), served over RTSP at
`--mount` (default /cam). It prints `PORT <n>` on stdout once the server is attached.

Control channel: one JSON object per line on stdin; each is answered on stdout by
`ACK <seq>` once it is in force (every frame drawn after the ACK has the new state):

    {"cmd": "masks", "seq": 1, "masks": [{"points": [[x, y], ...], "color": [Y, Cb, Cr]}]}
    {"cmd": "forget", "seq": 2}    # firmware reset: draw no masks any more
    {"cmd": "stats", "seq": 3}     # answered by `STATS {"frames": n, "cpu_s": s, ...}` first

Points are ONVIF normalised coordinates (-1..1, x right, y up, the whole picture); colours are
ONVIF's default YCbCr (JPEG: full range, BT.601), drawn as the limited-range values of the
stream's own matrix (`--matrix`, signalled in the H.264 VUI).
End of stdin stops the camera, as does SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Span = tuple[int, int, int]  # byte offset in the frame, length, fill value


@dataclass(frozen=True)
class Layout:
    """I420 layout of one frame (GStreamer's default strides: rows padded to 4 bytes)."""

    width: int
    height: int

    @property
    def strides(self) -> tuple[int, int]:
        return _round4(self.width), _round4((self.width + 1) // 2)

    @property
    def offsets(self) -> tuple[int, int, int]:
        sy, sc = self.strides
        ch = (self.height + 1) // 2
        return 0, sy * self.height, sy * self.height + sc * ch

    @property
    def size(self) -> int:
        sy, sc = self.strides
        return sy * self.height + 2 * sc * ((self.height + 1) // 2)


def _round4(n: int) -> int:
    return (n + 3) & ~3


def polygon_rows(
    points: list[tuple[float, float]], width: int, height: int
) -> dict[int, list[tuple[int, int]]]:
    """Luma pixel runs (row -> [(x0, x1 inclusive)]) whose centres lie inside the polygon."""
    px = [((x + 1.0) / 2.0 * width - 0.5, (1.0 - y) / 2.0 * height - 0.5) for x, y in points]
    rows: dict[int, list[float]] = {}
    n = len(px)
    for i in range(n):
        (x0, y0), (x1, y1) = px[i], px[(i + 1) % n]
        if y0 == y1:
            continue
        lo, hi = min(y0, y1), max(y0, y1)
        for r in range(max(0, math.ceil(lo)), min(height, math.ceil(hi))):
            rows.setdefault(r, []).append(x0 + (r - y0) * (x1 - x0) / (y1 - y0))
    runs: dict[int, list[tuple[int, int]]] = {}
    for r, xs in rows.items():
        xs.sort()
        for a, b in zip(xs[0::2], xs[1::2], strict=False):
            start, stop = max(0, math.ceil(a)), min(width - 1, math.floor(b))
            if stop >= start:
                runs.setdefault(r, []).append((start, stop))
    return runs


MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def to_stream(color: list[float], matrix: str) -> tuple[int, int, int]:
    """ONVIF YCbCr (JPEG: full range, BT.601) -> this stream's limited-range Y, U, V."""
    y, cb, cr = (float(c) for c in color)
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    r, g, b = (min(255.0, max(0.0, c)) / 255.0 for c in (r, g, b))
    kr, kb = MATRICES[matrix]
    luma = kr * r + (1 - kr - kb) * g + kb * b
    u = (b - luma) / (2 * (1 - kb))
    v = (r - luma) / (2 * (1 - kr))

    def clamp(x: float) -> int:
        return max(0, min(255, round(x)))

    return clamp(16 + 219 * luma), clamp(128 + 224 * u), clamp(128 + 224 * v)


def mask_spans(masks: list[dict[str, Any]], layout: Layout, matrix: str) -> list[Span]:
    """Byte runs to fill for these masks; a chroma sample is filled if any of its luma pixels is."""
    spans: list[Span] = []
    sy, sc = layout.strides
    _, ou, ov = layout.offsets
    cw = (layout.width + 1) // 2
    for mask in masks:
        if not mask.get("enabled", True):
            continue
        points = [(float(x), float(y)) for x, y in mask["points"]]
        yv, uv, vv = to_stream(mask["color"], matrix)
        runs = polygon_rows(points, layout.width, layout.height)
        for r, row_runs in runs.items():
            for a, b in row_runs:
                spans.append((r * sy + a, b - a + 1, yv))
                ca, cb = a // 2, min(cw - 1, b // 2)
                c_row = r // 2
                spans.append((ou + c_row * sc + ca, cb - ca + 1, uv))
                spans.append((ov + c_row * sc + ca, cb - ca + 1, vv))
    return spans


class Camera:
    """Decoded source frames, the current masks, and one producer per RTSP media."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.layout = Layout(args.width, args.height)
        self.frame_ns = Gst.util_uint64_scale(Gst.SECOND, args.fps_d, args.fps_n)
        self.lock = threading.Lock()
        self.spans: list[Span] = []
        self.fills: dict[int, bytes] = {}  # value -> bytes long enough for any run
        self.frames = 0
        self.source = Gst.parse_launch(self._source_line())
        self.sink = self.source.get_by_name("sink")
        parse = self.source.get_by_name("parse")
        if parse is not None:
            parse.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._restamp, [0])

    def _source_line(self) -> str:
        a = self.args
        caps = f"video/x-raw,format=I420,width={a.width},height={a.height}"
        tail = f"! videoconvert ! videoscale ! {caps} ! appsink name=sink sync=false max-buffers=2"
        if a.pattern:
            return f"videotestsrc pattern={a.pattern} ! {caps},framerate={a.fps_n}/{a.fps_d} {tail}"
        location = a.source.replace("%", "%%").replace('"', '\\"')
        return (
            f'multifilesrc location="{location}" loop=true '
            f"caps=video/x-h264,stream-format=byte-stream,framerate={a.fps_n}/{a.fps_d} "
            f"! h264parse name=parse ! avdec_h264 {tail}"
        )

    def _restamp(
        self, _pad: Gst.Pad, info: Gst.PadProbeInfo, counter: list[int]
    ) -> Gst.PadProbeReturn:
        # Monotonic timestamps across file loops, so the decoder never sees time run backwards.
        buf = info.get_buffer()
        if buf is not None:
            buf.pts = buf.dts = counter[0] * self.frame_ns
            buf.duration = self.frame_ns
            counter[0] += 1
        return Gst.PadProbeReturn.OK

    def start(self) -> None:
        self.source.set_state(Gst.State.PLAYING)

    def stop(self) -> None:
        self.source.set_state(Gst.State.NULL)

    def set_masks(self, masks: list[dict[str, Any]]) -> None:
        spans = mask_spans(masks, self.layout, self.args.matrix)
        longest = max((n for _, n, _ in spans), default=0)
        fills = {v: bytes([v]) * longest for v in {v for _, _, v in spans}}
        with self.lock:
            self.spans, self.fills = spans, fills

    def next_frame(self) -> bytes | None:
        sample = self.sink.emit("try-pull-sample", 2 * Gst.SECOND)
        if sample is None:
            return None
        buf = sample.get_buffer()
        data = bytearray(buf.extract_dup(0, buf.get_size()))
        if len(data) < self.layout.size:
            return None
        with self.lock:
            spans, fills = self.spans, self.fills
            self.frames += 1
        view = memoryview(data)
        for offset, length, value in spans:
            view[offset : offset + length] = fills[value][:length]
        return bytes(data)


class MaskingFactory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]
    def __init__(self, camera: Camera) -> None:
        super().__init__()
        a = camera.args
        self.camera = camera
        caps = (
            f"video/x-raw,format=I420,width={a.width},height={a.height},"
            f"framerate={a.fps_n}/{a.fps_d},colorimetry={a.matrix}"
        )
        frame_bytes = camera.layout.size
        self.set_launch(
            f"( appsrc name=src is-live=false format=time caps={caps} "
            f"max-bytes={2 * frame_bytes} block=false "
            f"! x264enc tune=zerolatency speed-preset=ultrafast bframes=0 threads=1 "
            f"key-int-max={a.keyint} bitrate={a.bitrate} "
            f"! video/x-h264,profile=baseline ! h264parse config-interval=-1 "
            f"! rtph264pay name=pay0 pt=96 )"
        )
        # One encoder shared by every viewer, like a camera.
        self.set_shared(True)
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(
        self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia
    ) -> None:
        src = media.get_element().get_by_name("src")
        src.connect("need-data", self._need_data, [0])

    def _need_data(self, src: Gst.Element, _length: int, counter: list[int]) -> None:
        frame = self.camera.next_frame()
        if frame is None:
            src.emit("end-of-stream")
            return
        buf = Gst.Buffer.new_wrapped(frame)
        buf.pts = buf.dts = counter[0] * self.camera.frame_ns
        buf.duration = self.camera.frame_ns
        counter[0] += 1
        src.emit("push-buffer", buf)


def control_loop(camera: Camera, loop: GLib.MainLoop) -> None:
    """Read commands from stdin until it closes; acknowledge each on stdout."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        seq = None
        try:
            msg = json.loads(line)
            seq = msg.get("seq")
            cmd = msg["cmd"]
            if cmd == "masks":
                camera.set_masks(list(msg["masks"]))
            elif cmd == "forget":
                camera.set_masks([])
            elif cmd == "stats":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                stats = {
                    "frames": camera.frames,
                    "cpu_s": usage.ru_utime + usage.ru_stime,
                    "wall_s": time.monotonic() - STARTED,
                }
                print(f"STATS {json.dumps(stats)}", flush=True)
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except (ValueError, KeyError, TypeError) as exc:
            print(f"ERROR {seq} {exc}", flush=True)
            continue
        print(f"ACK {seq}", flush=True)
    GLib.idle_add(loop.quit)


STARTED = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help="Annex-B H.264 clip to loop")
    src.add_argument("--pattern", help="videotestsrc pattern instead of a clip (e.g. smpte)")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the stream")
    parser.add_argument("--fps", default="25")
    parser.add_argument("--keyint", type=int, default=25, help="frames between keyframes")
    parser.add_argument("--bitrate", type=int, default=1500, help="kbit/s")
    parser.add_argument(
        "--matrix",
        choices=sorted(MATRICES),
        default=None,
        help="YUV matrix signalled and drawn in (default: bt709 from 720 lines up, else bt601)",
    )
    parser.add_argument("--mount", default="/cam")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    m = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if not m or int(m.group(1)) % 2 or int(m.group(2)) % 2:
        parser.error("--size must be WIDTHxHEIGHT with even sides")
    args.width, args.height = int(m.group(1)), int(m.group(2))
    args.matrix = args.matrix or ("bt709" if args.height >= 720 else "bt601")
    n, _, d = args.fps.partition("/")
    args.fps_n, args.fps_d = int(n), int(d or 1)
    if args.source and not os.path.isfile(args.source):
        parser.error(f"no such file: {args.source}")

    Gst.init(None)
    loop = GLib.MainLoop()
    camera = Camera(args)
    camera.start()
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.mount, MaskingFactory(camera))
    if server.attach(None) == 0:
        print(f"cannot bind {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1

    def _stop(*_: object) -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, _stop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, _stop)
    threading.Thread(target=control_loop, args=(camera, loop), daemon=True).start()
    print(f"PORT {server.get_bound_port()}", flush=True)
    loop.run()
    camera.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
