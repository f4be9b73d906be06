"""A camera worker's side of the RTSP relay: masked frames -> H.264 -> the relay's ingest socket.

The worker hands over frames only after masking them (the same frames the recorder encodes);
this module never sees a raw frame, and it writes nothing to disk: access units go over a Unix
socket to the relay process (`relay_server.py`), which keeps them in memory only.

- `RelayLink` keeps the connection (reconnecting with backoff), sends access units from a writer
  thread through a bounded queue (a slow relay costs dropped frames, never a stalled camera),
  and reads the relay's control bytes: whether anyone watches, and when a viewer needs a
  keyframe.
- `RelayEncoder` is x264 tuned for a control room: ultrafast, zerolatency, no B-frames, a short
  GOP, SPS/PPS repeated before every keyframe (a viewer can join at any keyframe) and a keyframe
  on demand.
- `RelayFeed` is what the worker holds: `feed(frame)` encodes and sends while someone watches;
  `forward(packet, ...)` sends already-encoded packets unchanged (a passthrough camera's
  in-camera-masked stream: no decode, no re-encode).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

logger = logging.getLogger(__name__)

# The wire format, mirrored in relay_server.py (which must stay free of project imports).
MAGIC = b"VMSR"
VERSION = 1
HELLO = struct.Struct("<4sHI")
FRAME = struct.Struct("<BIQ")
KIND_AU = 0x10
FLAG_KEY = 0x01
WANT, IDLE, KEYFRAME = b"W", b"I", b"K"

_TIME_BASE = Fraction(1, 90_000)
_START_CODE = b"\x00\x00\x00\x01"


@dataclass(frozen=True, slots=True)
class AccessUnit:
    data: bytes
    key: bool
    pts_us: int


class RelayLink:
    """The connection to the relay's ingest socket, for one camera."""

    def __init__(
        self,
        path: str,
        camera_id: int,
        *,
        queue_size: int = 8,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
    ) -> None:
        self.path = path
        self.camera_id = camera_id
        self._queue: queue.Queue[AccessUnit] = queue.Queue(maxsize=queue_size)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._stop = threading.Event()
        self._wanted = threading.Event()
        self._keyframe = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"relay-link-{camera_id}", daemon=True
        )
        self.sent = 0
        self.dropped = 0
        self.connects = 0

    def start(self) -> RelayLink:
        self._thread.start()
        return self

    @property
    def wanted(self) -> bool:
        """Someone watches this camera through the relay."""
        return self._wanted.is_set()

    def take_keyframe_request(self) -> bool:
        """True once per request from the relay for a keyframe (a new viewer joined)."""
        if self._keyframe.is_set():
            self._keyframe.clear()
            return True
        return False

    def send(self, unit: AccessUnit) -> bool:
        """Queue one access unit; False (and counted) when the relay lags and it was dropped."""
        try:
            self._queue.put_nowait(unit)
            return True
        except queue.Full:
            self.dropped += 1
            # The decoder downstream now misses a reference: resynchronise at a keyframe.
            self._keyframe.set()
            return False

    def close(self) -> None:
        self._stop.set()
        self._wanted.clear()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)

    # -- the link's thread: connect, then write while a reader thread reads control bytes ---

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(2.0)
                sock.connect(self.path)
                sock.sendall(HELLO.pack(MAGIC, VERSION, self.camera_id))
            except OSError:
                with contextlib.suppress(OSError):
                    sock.close()
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            self.connects += 1
            with self._lock:
                self._sock = sock
            reader = threading.Thread(
                target=self._read_control, args=(sock,), name="relay-control", daemon=True
            )
            reader.start()
            try:
                self._write(sock, reader)
            finally:
                self._wanted.clear()
                with self._lock:
                    self._sock = None
                with contextlib.suppress(OSError):
                    sock.close()
                reader.join(timeout=1)

    def _write(self, sock: socket.socket, reader: threading.Thread) -> None:
        while not self._stop.is_set() and reader.is_alive():
            try:
                unit = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            header = FRAME.pack(
                KIND_AU | (FLAG_KEY if unit.key else 0), len(unit.data), unit.pts_us
            )
            try:
                sock.sendall(header + unit.data)
            except OSError:
                return
            self.sent += 1

    def _read_control(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        while not self._stop.is_set():
            try:
                data = sock.recv(64)
            except OSError:
                return
            if not data:
                return
            for byte in data:
                code = bytes([byte])
                if code == WANT:
                    self._wanted.set()
                elif code == IDLE:
                    self._wanted.clear()
                    self._drain()
                elif code == KEYFRAME:
                    self._keyframe.set()

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()


class RelayEncoder:
    """Masked frames -> Annex-B H.264 access units for live viewing."""

    def __init__(self, *, preset: str = "ultrafast", gop_frames: int = 25, threads: int = 1):
        self.preset = preset
        self.gop_frames = max(1, gop_frames)
        self.threads = threads
        self._ctx: Any = None
        self._size: tuple[int, int] | None = None
        self._start: float | None = None
        self._last_pts = -1

    def reset(self) -> None:
        """Forget the stream: the next frame opens a new encoder with a keyframe."""
        self._ctx = None
        self._size = None
        self._start = None
        self._last_pts = -1

    def _open(self, width: int, height: int) -> None:
        ctx: Any = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = _TIME_BASE
        ctx.framerate = Fraction(25)
        ctx.options = {
            "preset": self.preset,
            "tune": "zerolatency",
            "threads": str(self.threads),
            # No B-frames, a short GOP without scene-cut keyframes, headers before every IDR.
            "x264-params": (
                f"bframes=0:keyint={self.gop_frames}:min-keyint={self.gop_frames}:"
                "scenecut=0:repeat-headers=1"
            ),
        }
        ctx.open()
        self._ctx = ctx
        self._size = (width, height)

    def encode(
        self, frame: av.VideoFrame, mono: float, *, keyframe: bool = False
    ) -> list[AccessUnit]:
        if self._size != (frame.width, frame.height):
            self.reset()
            self._open(frame.width, frame.height)
        if self._start is None:
            self._start = mono
        pts = round((mono - self._start) * _TIME_BASE.denominator)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = _TIME_BASE
        # A decoded frame keeps the camera's I/P decision; the encoder decides, unless a viewer
        # needs a keyframe now.
        frame.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        return [
            AccessUnit(bytes(p), bool(p.is_keyframe), round(mono * 1_000_000))
            for p in self._ctx.encode(frame)
        ]


def annexb_with_headers(data: bytes, extradata: bytes | None, key: bool) -> bytes:
    """A packet as a self-contained Annex-B access unit: SPS/PPS from the stream's extradata
    before a keyframe that does not carry them (cameras often send them only in the SDP)."""
    if not key or not extradata or _has_sps(data):
        return data
    if extradata.startswith((b"\x00\x00\x01", _START_CODE)):
        return extradata + data
    return _avcc_headers(extradata) + data


def _has_sps(data: bytes) -> bool:
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        if data[i + 3] & 0x1F == 7:
            return True
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


def _avcc_headers(extradata: bytes) -> bytes:
    """SPS and PPS from an avcC record, as Annex-B NAL units."""
    out = bytearray()
    try:
        pos = 5
        count = extradata[pos] & 0x1F
        pos += 1
        for _ in range(count):
            n = int.from_bytes(extradata[pos : pos + 2], "big")
            out += _START_CODE + extradata[pos + 2 : pos + 2 + n]
            pos += 2 + n
        count = extradata[pos]
        pos += 1
        for _ in range(count):
            n = int.from_bytes(extradata[pos : pos + 2], "big")
            out += _START_CODE + extradata[pos + 2 : pos + 2 + n]
            pos += 2 + n
    except IndexError:
        return b""
    return bytes(out)


class RelayFeed:
    """What a camera worker holds while the relay is configured."""

    def __init__(self, link: RelayLink, encoder: RelayEncoder) -> None:
        self.link = link
        self.encoder = encoder
        self.frames = 0
        self.errors = 0

    @classmethod
    def connect(cls, path: str, camera_id: int, *, gop_frames: int = 25) -> RelayFeed:
        return cls(RelayLink(path, camera_id).start(), RelayEncoder(gop_frames=gop_frames))

    @property
    def wanted(self) -> bool:
        return self.link.wanted

    def feed(self, masked: av.VideoFrame, mono: float) -> None:
        """Encode one masked frame and send it (only call while `wanted`)."""
        key = self.link.take_keyframe_request()
        for unit in self.encoder.encode(masked, mono, keyframe=key):
            self.link.send(unit)
        self.frames += 1

    def feed_safely(self, masked: av.VideoFrame, mono: float) -> None:
        """`feed`, but an encoder failure costs the relay a frame, never the camera worker."""
        try:
            self.feed(masked, mono)
        except (av.FFmpegError, ValueError, OSError) as exc:
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                logger.error("camera %s: relay encoding failed: %s", self.link.camera_id, exc)
            self.encoder.reset()

    def forward(self, data: bytes, *, key: bool, mono: float, extradata: bytes | None) -> None:
        """Send an already-encoded H.264 packet unchanged (passthrough: no decode, no encode).
        A keyframe request cannot be honoured here: the viewer joins at the camera's next
        keyframe."""
        self.link.take_keyframe_request()
        unit = AccessUnit(annexb_with_headers(data, extradata, key), key, round(mono * 1e6))
        self.link.send(unit)
        self.frames += 1

    def idle(self) -> None:
        """Nobody watches (or live view is no longer allowed): the next stream starts afresh."""
        self.encoder.reset()

    def close(self) -> None:
        self.link.close()
        self.encoder.reset()
