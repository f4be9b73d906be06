"""Live view from a camera's ONVIF substream while the main stream is recorded.

A city camera's main stream is 1080p for the recording; a control room's grid wants a few
hundred lines per tile. Decoding the main stream and encoding JPEGs at that size for live view
costs a camera worker more than its recording does. Cameras offer a second, smaller profile for
exactly this: with `live_profile_token` the worker reads that profile too, but only while
someone watches live (and for a short linger after, so a page reload does not reconnect).

Privacy does not depend on the camera: substream frames go through a `Masker` of their own
(the same plan, compiled for the substream's size; plans are in normalised coordinates, and a
detector's tracks of one stream are no use on the other). A frame that cannot be masked is
dropped, as on the main stream. While the substream is not delivering (not yet connected, a
wrong token, the camera's second encoder down) live view comes from the main stream, masked as
always, and the worker's status says which one viewers see.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Literal

from masking import Masker, MaskingError
from vms.pipeline.config import WorkerConfig
from vms.pipeline.reader import Reader, ReaderView
from vms.pipeline.source import DecodedFrame
from vms.pipeline.status import CameraState

logger = logging.getLogger(__name__)

# How long the substream stays open after the last viewer left.
LINGER_S = 15.0

LiveStream = Literal["main", "substream"]


def live_config(config: WorkerConfig) -> WorkerConfig | None:
    """The config the substream's reader gets, or None when the camera has no separate live
    profile (not ONVIF, none chosen, the same as the recorded one, or no live view at all)."""
    source = config.source
    token = source.live_profile_token
    if source.kind != "onvif" or token is None or token == source.profile_token:
        return None
    if config.mode == "recording":
        return None
    return dataclasses.replace(
        config,
        source=dataclasses.replace(source, profile_token=token, live_profile_token=None),
        frame_queue=2,
    )


class Substream:
    """The live profile's reader (started on demand) and the masker of its frames.

    Used from the worker's main thread only; the reader is a thread of its own.
    """

    def __init__(
        self,
        config: WorkerConfig,
        build_masker: Callable[[], Masker],
        *,
        linger_s: float = LINGER_S,
    ) -> None:
        self.config = config
        self.linger_s = linger_s
        self._build_masker = build_masker
        self.masker: Masker | None = None
        self.view = ReaderView()
        self._frames: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=2)
        self._reader: Reader | None = None
        self._stop = threading.Event()
        self._unwatched_since: float | None = None
        self._generation = 0
        self.dropped = 0  # frames that could not be masked

    @property
    def running(self) -> bool:
        return self._reader is not None

    def want(self, watched: bool, now: float) -> None:
        """Start the reader when someone watches; stop it `linger_s` after nobody does."""
        if watched:
            self._unwatched_since = None
            if self._reader is None:
                self._start()
            return
        if self._reader is None:
            return
        if self._unwatched_since is None:
            self._unwatched_since = now
        elif now - self._unwatched_since >= self.linger_s:
            self.stop()

    def delivering(self, now: float) -> bool:
        """Whether the substream's frames are fresh enough to be the live view."""
        if self._reader is None:
            return False
        with self.view.lock:
            state, last = self.view.state, self.view.last_frame_mono
        return (
            state is CameraState.streaming
            and last is not None
            and now - last <= self.config.stall_seconds
        )

    def latest(self) -> DecodedFrame | None:
        """The newest frame waiting (older ones are skipped: live view wants the present)."""
        newest: DecodedFrame | None = None
        while True:
            try:
                generation, decoded = self._frames.get_nowait()
            except queue.Empty:
                break
            if generation != self._generation:
                # A new connection: the previous one's detections say nothing about this one.
                self._generation = generation
                if self.masker is not None:
                    self.masker.reset()
            newest = decoded
        return newest

    def mask(self, decoded: DecodedFrame) -> Any | None:
        """The frame masked by the substream's own masker; None when it cannot be (dropped)."""
        if self.masker is None:
            self.masker = self._build_masker()
        try:
            return self.masker.mask_frame(decoded.frame)
        except MaskingError:
            self.dropped += 1
            return None

    def error(self) -> str | None:
        """Why the substream is not delivering, for the worker's status (None: it is, or idle)."""
        if self._reader is None:
            return None
        with self.view.lock:
            state, error = self.view.state, self.view.last_error
        if state is CameraState.streaming or error is None:
            return None
        return f"live substream: {error}"

    def _start(self) -> None:
        self._stop = threading.Event()
        # A fresh queue and view per run: frames of a reader that is still winding down never
        # mix with the new one's.
        self._frames = queue.Queue(maxsize=2)
        self.view = ReaderView()
        # The new reader counts connections from 1 again, and the tracks of detections from
        # the last run (seconds or minutes ago) say nothing about now: detect on the first frame.
        self._generation = 0
        if self.masker is not None:
            self.masker.reset()
        self._reader = Reader(self.config, self._frames, self.view, self._stop)
        self._reader.name = f"live-reader-{self.config.camera_id}"
        self._reader.start()
        logger.info("camera %s: live view from the substream", self.config.camera_id)

    def stop(self, join_timeout: float = 0.0) -> None:
        reader, self._reader = self._reader, None
        self._unwatched_since = None
        if reader is None:
            return
        self._stop.set()
        if join_timeout > 0:
            reader.join(timeout=join_timeout)
        logger.info("camera %s: live substream closed", self.config.camera_id)
