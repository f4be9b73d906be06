"""Helpers for in-camera mask tests: plans, and decoded frames pulled from a real RTSP camera."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import av
import pytest

from masking.incamera import CheckResult, MaskCheck, MaskColor
from masking.plan import MaskPlan, parse_plan
from tests.pipeline.conftest import FACADE_PLAN

RTSP_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32768"}

# Default keep with anonymised polygons: a concave L, a triangle, and a kept window in a block.
POLYGON_PLAN: dict[str, Any] = {
    "version": 1,
    "method": "blur",
    "default": "keep",
    "zones": [
        {"type": "polygon", "action": "anonymise",
         "points": [[0.05, 0.05], [0.45, 0.05], [0.45, 0.2], [0.2, 0.2], [0.2, 0.5], [0.05, 0.5]]},
        {"type": "polygon", "action": "anonymise",
         "points": [[0.6, 0.1], [0.95, 0.15], [0.8, 0.45]]},
        {"type": "polygon", "action": "anonymise",
         "points": [[0.5, 0.6], [0.9, 0.6], [0.9, 0.95], [0.5, 0.95]]},
        {"type": "polygon", "action": "keep",
         "points": [[0.6, 0.7], [0.8, 0.7], [0.8, 0.85], [0.6, 0.85]]},
    ],
}  # fmt: skip


def facade_plan() -> MaskPlan:
    return parse_plan(FACADE_PLAN)


def polygon_plan() -> MaskPlan:
    return parse_plan(POLYGON_PLAN)


@contextmanager
def rtsp_frames(url: str, *, keyframes_only: bool = False) -> Iterator[Iterator[av.VideoFrame]]:
    """Decoded frames of a live RTSP stream (only keyframes are decoded with keyframes_only)."""
    with av.open(url, options=RTSP_OPTIONS, timeout=(5.0, 5.0)) as container:
        stream = container.streams.video[0]
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        yield container.decode(stream)


def frame_after(url: str, seconds: float = 0.0) -> av.VideoFrame:
    """The first frame decoded at least `seconds` after connecting."""
    start = time.monotonic()
    with rtsp_frames(url) as frames:
        for frame in frames:
            if time.monotonic() - start >= seconds:
                return frame
    pytest.fail(f"{url} ended before a frame")


@dataclass
class KeyframeChecker:
    """Checks one keyframe every `interval` seconds from a live stream, in a thread.

    What the passthrough recorder will do: decode only keyframes (cheap), check one per interval.
    """

    url: str
    check: MaskCheck
    color: MaskColor
    interval: float = 1.0
    results: list[tuple[float, CheckResult]] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> KeyframeChecker:
        self._thread = threading.Thread(target=self._run, name="keyframe-check", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with rtsp_frames(self.url, keyframes_only=True) as frames:
                due = 0.0
                for frame in frames:
                    if self._stop.is_set():
                        return
                    now = time.monotonic()
                    if now >= due:
                        self.results.append((now, self.check.verify_frame(frame, self.color)))
                        due = now + self.interval
        except BaseException as exc:
            self.error = exc

    def first_failure_after(self, t: float, timeout: float) -> tuple[float, CheckResult]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, result in list(self.results):
                if when > t and not result.ok:
                    return when, result
            if self.error is not None:
                raise self.error
            time.sleep(0.02)
        pytest.fail(f"no failed check within {timeout}s; last: {self.results[-3:]}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
