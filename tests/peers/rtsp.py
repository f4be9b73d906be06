"""Real RTSP peers for tests: GStreamer servers looping converted sample footage, a server that
accepts and then stalls, and a port where nothing listens.

Missing tools fail loudly (never skip): a CI run without GStreamer must not pass by skipping.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sample_streams import APT_HINT, RtspServerProcess, gst_problem, sample_videos
from sample_streams.convert import TESTSRC, FfmpegMissing, convert_cached, ffmpeg_path

RTSP_USER = "admin"
# Same credentials as the ONVIF device: a camera has one account for both. ':' and '@' make sure
# credentials are URL-encoded wherever they are put into a URL.
RTSP_PASSWORD = "onvif-Pa55:w@rd"
CLIP_SECONDS = 4.0
CLIP_FPS = 25


@dataclass(frozen=True)
class SampleClips:
    """Annex-B H.264 clips (no B-frames, 1 s GOP) cut from the sample footage."""

    source: Path  # the real footage they come from
    real_360: Path  # 640x360
    real_720: Path  # 1280x720
    testsrc_360: Path  # ffmpeg test pattern, 640x360

    def mounts(self) -> dict[str, Path]:
        return {"/real360": self.real_360, "/real720": self.real_720, "/test360": self.testsrc_360}


def require_rtsp_tools() -> None:
    """Fail the test (not skip) when ffmpeg or the GStreamer RTSP server is missing."""
    try:
        ffmpeg_path()
    except FfmpegMissing as exc:
        pytest.fail(f"{exc}. Install: {APT_HINT}", pytrace=False)
    problem = gst_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def sample_video() -> Path:
    """A real clip from the shared sample media ($VMS_SAMPLE_MEDIA_DIR or ../shared)."""
    videos = sample_videos()
    if not videos:
        pytest.fail(
            "no sample footage: set VMS_SAMPLE_MEDIA_DIR to a directory with video/*.mp4 "
            "(default ../shared/sample_media next to the repository)",
            pytrace=False,
        )
    # car-detection.mp4 is street footage close to what a camera sees; else take the first.
    by_name = {v.name: v for v in videos}
    return by_name.get("car-detection.mp4", videos[0])


@pytest.fixture(scope="session")
def sample_clips(tmp_path_factory: pytest.TempPathFactory, sample_video: Path) -> SampleClips:
    require_rtsp_tools()
    cache = tmp_path_factory.mktemp("clips")
    common: dict[str, Any] = {"fps": CLIP_FPS, "seconds": CLIP_SECONDS}
    return SampleClips(
        source=sample_video,
        real_360=convert_cached(sample_video, cache, size=(640, 360), **common),
        real_720=convert_cached(sample_video, cache, size=(1280, 720), **common),
        testsrc_360=convert_cached(TESTSRC, cache, size=(640, 360), **common),
    )


@pytest.fixture(scope="session")
def rtsp_server(sample_clips: SampleClips) -> Iterator[RtspServerProcess]:
    """One server for the session: /real360, /real720 (sample footage), /test360 (pattern)."""
    with RtspServerProcess(sample_clips.mounts()) as server:
        yield server


@pytest.fixture(scope="session")
def rtsp_auth_server(sample_clips: SampleClips) -> Iterator[RtspServerProcess]:
    """Like `rtsp_server` but requiring digest auth as RTSP_USER / RTSP_PASSWORD."""
    with RtspServerProcess(
        sample_clips.mounts(), user=RTSP_USER, password=RTSP_PASSWORD, auth="digest"
    ) as server:
        yield server


@pytest.fixture
def rtsp_server_factory(
    sample_clips: SampleClips,
) -> Iterator[Callable[..., RtspServerProcess]]:
    """Start private servers a test may kill and restart; all are stopped at teardown.

    Called with no arguments it serves /real360; keyword arguments go to RtspServerProcess.
    """
    started: list[RtspServerProcess] = []

    def make(mounts: dict[str, str | Path] | None = None, **kwargs: Any) -> RtspServerProcess:
        server = RtspServerProcess(mounts or {"/real360": sample_clips.real_360}, **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


class StallServer:
    """TCP server on 127.0.0.1:0 that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stall-server", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            # Hold the connection open, unread: the client sees a live but silent peer.
            self._conns.append(conn)
            self.accepted += 1

    def url(self, path: str = "/stall", scheme: str = "rtsp") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> StallServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._conns:
            conn.close()
        self._sock.close()


@pytest.fixture
def stall_server() -> Iterator[StallServer]:
    server = StallServer().start()
    yield server
    server.stop()


def unused_port() -> int:
    """A localhost port nobody listens on right now (connecting gets 'connection refused')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def closed_port() -> int:
    return unused_port()
