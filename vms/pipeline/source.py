"""Open and decode a camera stream (RTSP) or a video file with PyAV.

No database, no global settings: everything comes in through a frozen `SourceConfig`. Errors are
mapped onto a small `SourceError` family whose messages never contain credentials — FFmpeg puts
the full URL, password included, into its error text, so every message goes through `scrub_url`
and the original PyAV exception is deliberately not chained.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, unquote, urlsplit

import av
import av.error

from vms.core.crypto import scrub, split_query_secrets

logger = logging.getLogger(__name__)

_STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "srt", "udp", "tcp")


def scrub_url(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with URL credentials (and any of `secrets`, raw or %-encoded) replaced by ***."""
    text = scrub(text)
    for secret in secrets:
        # Short secrets would shred ordinary words; the URL patterns above cover those.
        if len(secret) >= 3:
            for spelling in (secret, quote(secret, safe="")):
                text = text.replace(spelling, "***")
    return text


def _url_secrets(url: str) -> tuple[str, ...]:
    """The credentials in `url` (userinfo password, credential-like query values) in every
    spelling FFmpeg might echo back."""
    try:
        password = urlsplit(url).password
        _, query = split_query_secrets(url)
    except ValueError:
        return ()
    values = [v for _, v in query if v]
    if password:
        values.append(password)
    return tuple({s for v in values for s in (v, unquote(v))})


class SourceError(Exception):
    """Opening or reading a source failed. The message is already free of credentials."""

    def __init__(self, message: str, *, url: str = "", secrets: tuple[str, ...] = ()) -> None:
        secrets = secrets + _url_secrets(url)
        self.url = scrub_url(url, secrets)
        super().__init__(scrub_url(message, secrets))


class ConnectionRefused(SourceError):
    """Nothing is listening at the camera's address and port."""


class NotFound(SourceError):
    """The server answered but has no such stream (RTSP 404) or the file does not exist."""


class Unauthorized(SourceError):
    """The server rejected the credentials (RTSP 401/403)."""


class SourceTimeout(SourceError):
    """No answer within the open timeout, or no data within the read timeout (a stall)."""


class StreamEnded(SourceError):
    """A live stream was closed by the server (camera rebooted, server killed)."""


class DecodeError(SourceError):
    """Too many consecutive packets could not be decoded."""


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """How to open one source; `url` is a stream URL or a file path."""

    url: str = field(repr=False)
    open_timeout: float = 5.0
    read_timeout: float = 5.0
    tcp: bool = True
    # Files only: sleep so frames come out at the file's frame rate, like a camera.
    realtime: bool = False
    # Files only: start again at the end (demo cameras).
    loop: bool = False
    # Bytes FFmpeg reads before returning from open; see `rtsp_options`.
    probesize: int = 32768
    max_decode_errors: int = 25
    # 0: FFmpeg's choice (a thread per core); 1 by default in workers (one per camera).
    decoder_threads: int = 0

    def __post_init__(self) -> None:
        if self.open_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")

    def __repr__(self) -> str:
        return (
            f"SourceConfig(url={scrub_url(self.url)!r}, open_timeout={self.open_timeout}, "
            f"read_timeout={self.read_timeout}, tcp={self.tcp}, realtime={self.realtime}, "
            f"loop={self.loop})"
        )

    @property
    def is_stream(self) -> bool:
        return urlsplit(self.url).scheme.lower() in _STREAM_SCHEMES


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """One decoded picture (yuv420p) and when it was decoded."""

    frame: av.VideoFrame
    wall_time: datetime  # UTC, at decode
    monotonic: float  # time.monotonic() at decode, for watchdogs and rates
    index: int  # frames yielded by this source so far
    pts_seconds: float | None  # stream time; None when the stream has no timestamps yet


@dataclass(frozen=True, slots=True)
class StreamPacket:
    """One packet of the stream as it came (not decoded) and when it arrived."""

    packet: av.Packet[Any]
    wall_time: datetime  # UTC, at arrival
    monotonic: float


def rtsp_options(config: SourceConfig) -> dict[str, str]:
    """FFmpeg demuxer options for a network stream."""
    return {
        "rtsp_transport": "tcp" if config.tcp else "udp",
        # Without these two FFmpeg reads about a second of stream before open returns. probesize
        # is in bytes, so a low-bitrate stream still waits for that much data (~0.6 s for a
        # 450 kbit/s 640x360 stream, ~0.15 s at 720p).
        "analyzeduration": "0",
        "probesize": str(config.probesize),
        # Never set up audio: we do not process it, and recording sound is a privacy decision
        # this pipeline does not make.
        "allowed_media_types": "video",
    }


def _per_read_timeout(config: SourceConfig) -> float:
    # The H.264 parser holds the last access unit until the next one starts, so a stalled stream
    # only fails on the second timed-out read: give each read a bit under half the budget.
    return config.read_timeout * 0.45 if config.is_stream else config.read_timeout


def open_source(
    url: str | Path,
    *,
    open_timeout: float = 5.0,
    read_timeout: float = 5.0,
    tcp: bool = True,
    realtime: bool = False,
    loop: bool = False,
) -> Source:
    """Open a stream URL or file; use as a context manager."""
    return open_config(
        SourceConfig(
            str(url),
            open_timeout=open_timeout,
            read_timeout=read_timeout,
            tcp=tcp,
            realtime=realtime,
            loop=loop,
        )
    )


def open_config(config: SourceConfig) -> Source:
    """Open the source `config` describes; use as a context manager."""
    started = time.monotonic()
    container = _open_container(config)
    try:
        source = Source(container, config)
    except BaseException:
        container.close()
        raise
    logger.info(
        "opened %s in %.2fs (%sx%s %s)",
        source.url,
        time.monotonic() - started,
        source.width,
        source.height,
        source.codec,
    )
    return source


def _open_container(config: SourceConfig) -> Any:
    options = rtsp_options(config) if config.is_stream else {}
    started = time.monotonic()
    error: SourceError | None = None
    try:
        return av.open(
            config.url,
            mode="r",
            options=options,
            timeout=(config.open_timeout, _per_read_timeout(config)),
        )
    except (av.FFmpegError, OSError) as exc:
        error = _classify(exc, config, time.monotonic() - started, opening=True)
    # Raised outside the except block so the PyAV error (URL and password in its text and
    # `filename`) is neither chained nor attached as context.
    raise error


def iter_frames(config: SourceConfig) -> Iterator[DecodedFrame]:
    """Open, yield frames until the source ends or fails, and close."""
    with open_config(config) as source:
        yield from source.frames()


class Source:
    """An open source. Not thread-safe: one reader thread owns it."""

    def __init__(self, container: Any, config: SourceConfig) -> None:
        if not container.streams.video:
            raise NotFound("no video stream", url=config.url)
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.codec_context.thread_count = config.decoder_threads
        self.config = config
        self.url = scrub_url(config.url, _url_secrets(config.url))
        self._secrets = _url_secrets(config.url)
        self._index = 0

    @property
    def width(self) -> int:
        return int(self._stream.codec_context.width)

    @property
    def height(self) -> int:
        return int(self._stream.codec_context.height)

    @property
    def codec(self) -> str:
        return str(self._stream.codec_context.name)

    @property
    def fps(self) -> float | None:
        """Nominal frame rate, if the stream declares one."""
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else None

    def frames(self) -> Iterator[DecodedFrame]:
        """Decoded frames; raises a SourceError when the source fails or a live stream ends."""
        time_base: Fraction | None = self._stream.time_base
        pace_start: float | None = None  # monotonic time of stream time 0 when pacing
        loop_offset = 0.0  # stream seconds added per file loop, so pacing keeps going forward
        last_pts = 0.0
        frame_step = 1.0 / (self.fps or 25.0)
        while True:
            for n, frame in enumerate(self._decode_until_end()):
                pts = float(frame.pts * time_base) if frame.pts is not None and time_base else None
                if pts is None and not self.config.is_stream:
                    # Raw H.264 files carry no timestamps; number the frames at the nominal rate.
                    pts = n * frame_step
                if pts is not None:
                    pts += loop_offset
                    last_pts = pts
                if self.config.realtime and not self.config.is_stream and pts is not None:
                    now = time.monotonic()
                    if pace_start is None:
                        pace_start = now - pts
                    delay = pace_start + pts - now
                    if delay > 0:
                        time.sleep(delay)
                if frame.format.name != "yuv420p":
                    frame = frame.reformat(format="yuv420p")
                yield DecodedFrame(
                    frame=frame,
                    wall_time=datetime.now(UTC),
                    monotonic=time.monotonic(),
                    index=self._index,
                    pts_seconds=pts,
                )
                self._index += 1
            if self.config.is_stream:
                raise StreamEnded(
                    f"stream ended: the server closed {self.url} after {self._index} frames",
                    url=self.config.url,
                )
            if not self.config.loop:
                return
            loop_offset = last_pts + frame_step
            # Reopen rather than seek(0): raw H.264 (what the sample server loops) cannot seek,
            # and a fresh decoder is needed anyway after the end-of-file drain.
            self._container.close()
            self._container = _open_container(self.config)
            self._stream = self._container.streams.video[0]
            self._stream.codec_context.thread_count = self.config.decoder_threads
            logger.debug("looping %s", self.url)

    @property
    def stream(self) -> Any:
        """The video stream (its codec parameters: the template of a remuxed segment)."""
        return self._stream

    def packets(self) -> Iterator[StreamPacket]:
        """The stream's packets as they arrive, not decoded (passthrough recording); raises a
        SourceError when the source fails or a live stream ends."""
        for packet in self._packets_until_end():
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            yield StreamPacket(packet, datetime.now(UTC), time.monotonic())
        if self.config.is_stream:
            raise StreamEnded(f"stream ended: the server closed {self.url}", url=self.config.url)

    def _packets_until_end(self) -> Iterator[av.Packet[Any]]:
        """Packets up to end of stream; network errors become SourceErrors."""
        demux = self._container.demux(self._stream)
        while True:
            started = time.monotonic()
            error: SourceError | None = None
            try:
                packet = next(demux)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as exc:
                error = _classify(exc, self.config, time.monotonic() - started, opening=False)
            if error is not None:
                raise error  # outside the except block: see open_config
            yield packet

    def _decode_until_end(self) -> Iterator[av.VideoFrame]:
        """Frames up to end of stream; network and decoder errors become SourceErrors."""
        bad_in_a_row = 0
        for packet in self._packets_until_end():
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                # Isolated bad packets happen (a viewer joining mid-GOP, a damaged file); only a
                # run of them means the stream is unusable.
                bad_in_a_row += 1
                logger.debug("undecodable packet from %s: %s", self.url, _scrub_exc(exc, self))
                if bad_in_a_row >= self.config.max_decode_errors:
                    raise DecodeError(
                        f"{bad_in_a_row} packets in a row failed to decode from {self.url}: "
                        f"{_scrub_exc(exc, self)}",
                        url=self.config.url,
                    ) from None
                continue
            if frames:
                bad_in_a_row = 0
            yield from frames

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _scrub_exc(exc: BaseException, source: Source) -> str:
    return scrub_url(f"{type(exc).__name__}: {exc}", source._secrets)


def _classify(
    exc: BaseException, config: SourceConfig, elapsed: float, *, opening: bool
) -> SourceError:
    """Map a PyAV/OS error onto the SourceError family (message scrubbed by SourceError)."""
    where = scrub_url(config.url, _url_secrets(config.url))
    detail = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
    phase = "opening" if opening else "reading"
    limit = config.open_timeout if opening else _per_read_timeout(config)
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused(f"connection refused by {where}", url=config.url)
    if isinstance(exc, av.error.HTTPNotFoundError | FileNotFoundError):
        return NotFound(f"no such stream or file: {where} ({detail})", url=config.url)
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return Unauthorized(f"credentials rejected by {where} ({detail})", url=config.url)
    # PyAV's timeout surfaces as ExitError, or in the middle of the RTSP handshake as
    # InvalidDataError, recognisable only by the time it took; FFmpeg's own as TimeoutError.
    timed_out = isinstance(exc, av.error.ExitError | TimeoutError) or (
        isinstance(exc, av.error.InvalidDataError) and elapsed >= 0.9 * limit
    )
    if timed_out:
        return SourceTimeout(
            f"timed out {phase} {where} after {elapsed:.1f}s ({detail})", url=config.url
        )
    return SourceError(f"error {phase} {where}: {detail}", url=config.url)
