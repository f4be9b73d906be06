"""The reader thread of a camera worker: open the source with explicit timeouts, demux and
decode into a bounded queue (drops counted), reconnect with backoff + jitter. A passthrough
worker's reader (`packets=True`) queues the stream's packets instead, undecoded."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from vms.core import netpolicy
from vms.pipeline import onvif
from vms.pipeline.config import SourceSpec, WorkerConfig
from vms.pipeline.restart import Backoff
from vms.pipeline.source import (
    DecodedFrame,
    Source,
    SourceConfig,
    SourceError,
    SourceTimeout,
    StreamPacket,
    open_config,
)
from vms.pipeline.status import CameraState, clean_error

logger = logging.getLogger(__name__)


@dataclass
class ReaderView:
    """What the reader thread tells the main thread (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    state: CameraState = CameraState.starting
    last_error: str | None = None
    reconnects: int = 0
    frames_in: int = 0
    dropped: int = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    generation: int = 0
    last_frame_mono: float | None = None
    last_frame_wall: dt.datetime | None = None
    # When the reader last came back from a blocking call; None while it sleeps on purpose.
    busy_since: float | None = None


def check_stream_host(url: str, networks: tuple[str, ...]) -> None:
    """A camera URL is whatever its facility manager typed: its host must resolve into the
    camera networks, or the decoder would connect anywhere the server can reach."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 554
    except ValueError as exc:
        raise SourceError("the camera URL cannot be parsed") from exc
    try:
        netpolicy.resolve_allowed(host, port, netpolicy.parse_networks(networks))
    except netpolicy.HostNotAllowed as exc:
        raise SourceError(f"refused: {exc}") from None


class Reader(threading.Thread):
    def __init__(
        self,
        config: WorkerConfig,
        frames: queue.Queue[tuple[int, Any]],
        view: ReaderView,
        stop: threading.Event,
        resolve_onvif: Callable[[SourceSpec, float], str] = onvif.resolve_source_url,
        *,
        packets: bool = False,
    ) -> None:
        super().__init__(name=f"reader-{config.camera_id}", daemon=True)
        self.config = config
        self.frames = frames
        self.packets = packets
        self.view = view
        self.stop = stop
        self._resolve_onvif = resolve_onvif
        self.backoff = Backoff(
            initial=config.reconnect_initial_s,
            maximum=config.reconnect_max_s,
            healthy_after=max(10.0, config.stall_seconds),
        )

    def _url(self) -> str:
        spec = self.config.source
        if spec.kind == "onvif":
            return self._resolve_onvif(spec, self.config.open_timeout_s)
        if not spec.url:
            raise SourceError(f"camera {self.config.camera_id} has no source URL or path")
        if spec.kind == "rtsp" and spec.networks:
            check_stream_host(spec.url, spec.networks)
        return spec.url

    def run(self) -> None:
        cfg = self.config
        while not self.stop.is_set():
            attempt = time.monotonic()
            self._set(busy_since=attempt)
            state, message = CameraState.reconnecting, "source ended"
            try:
                source_config = SourceConfig(
                    self._url(),
                    open_timeout=cfg.open_timeout_s,
                    read_timeout=cfg.read_timeout_s,
                    realtime=cfg.source.realtime,
                    loop=cfg.source.loop,
                    decoder_threads=cfg.decoder_threads,
                )
                with open_config(source_config) as source:
                    with self.view.lock:
                        self.view.generation += 1
                        self.view.width, self.view.height = source.width, source.height
                        self.view.fps = source.fps
                        generation = self.view.generation
                    items = source.packets() if self.packets else source.frames()
                    for item in items:
                        self._frame(generation, item, source)
                        if self.stop.is_set():
                            return
            except SourceTimeout as exc:
                state, message = CameraState.stalled, str(exc)
            except SourceError as exc:
                message = str(exc)
            except Exception as exc:
                message = _describe_error(exc)
                if not _is_onvif_error(exc):
                    logger.exception("camera %s: reader failed", cfg.camera_id)
            if self.stop.is_set():
                return
            self.backoff.ran_for(time.monotonic() - attempt)
            delay = self.backoff.failed()
            message = clean_error(message) or "source failed"
            logger.info(
                "camera %s: %s; retrying in %.1fs", cfg.camera_id, message, delay
            )  # fmt: skip
            with self.view.lock:
                self.view.state = state
                self.view.last_error = message
                self.view.busy_since = None
            if self.stop.wait(delay):
                return
            with self.view.lock:
                self.view.reconnects += 1

    def _frame(self, generation: int, item: DecodedFrame | StreamPacket, source: Source) -> None:
        now = item.monotonic
        if isinstance(item, DecodedFrame):
            size = item.frame.width, item.frame.height
        else:
            size = source.width, source.height
        with self.view.lock:
            self.view.state = CameraState.streaming
            self.view.frames_in += 1
            self.view.last_frame_mono = now
            self.view.last_frame_wall = item.wall_time
            self.view.busy_since = now
            self.view.width, self.view.height = size
        try:
            self.frames.put_nowait((generation, (item, source.stream) if self.packets else item))
        except queue.Full:
            with self.view.lock:
                self.view.dropped += 1

    def _set(self, **values: Any) -> None:
        with self.view.lock:
            for key, value in values.items():
                setattr(self.view, key, value)


def _is_onvif_error(exc: BaseException) -> bool:
    return type(exc).__module__ == "vms.pipeline.onvif"


def _describe_error(exc: BaseException) -> str:
    if _is_onvif_error(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
