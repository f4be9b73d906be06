"""Opening and decoding streams against real peers: a GStreamer RTSP server, a silent TCP
server, a closed port, and sample footage on disk."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sample_streams import RtspServerProcess
from sample_streams.convert import convert
from tests.peers.rtsp import RTSP_PASSWORD, SampleClips, StallServer
from vms.pipeline.source import (
    ConnectionRefused,
    NotFound,
    SourceConfig,
    SourceError,
    SourceTimeout,
    StreamEnded,
    Unauthorized,
    iter_frames,
    open_source,
    scrub_url,
)

# Timeouts short enough to keep the suite fast, long enough for a loaded 2-core CI box.
OPEN_TIMEOUT = 3.0
READ_TIMEOUT = 2.0


def first_frame_after(url: str) -> tuple[float, int, int]:
    started = time.monotonic()
    with open_source(url, open_timeout=OPEN_TIMEOUT, read_timeout=READ_TIMEOUT) as source:
        frame = next(source.frames())
    return time.monotonic() - started, frame.frame.width, frame.frame.height


# -- pure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/s1", "rtsp://***@10.0.0.5:554/s1"),
        ("failed: 'rtsp://u:p@ss@cam/x' returned", "failed: 'rtsp://***@cam/x' returned"),
        ("http://cam/snap.jpg?user=a&password=hunter2&x=1", "http://cam/snap.jpg?user=***&password=***&x=1"),
        ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
        ("two rtsp://a:b@h1/ and http://c:d@h2/", "two rtsp://***@h1/ and http://***@h2/"),
    ],
)  # fmt: skip
def test_scrub_url_removes_credentials(text: str, expected: str) -> None:
    assert scrub_url(text) == expected


def test_scrub_url_removes_known_secrets_anywhere() -> None:
    assert scrub_url("auth failed for hunter2", ("hunter2",)) == "auth failed for ***"
    assert scrub_url("sent p%40ss%3Aword", ("p@ss:word",)) == "sent ***"


def test_config_repr_hides_password() -> None:
    assert "hunter2" not in repr(SourceConfig("rtsp://admin:hunter2@cam/x"))


# -- files --------------------------------------------------------------------------------------


def test_file_decodes_to_yuv420p_with_timestamps(sample_clips: SampleClips) -> None:
    with open_source(sample_clips.source) as source:
        frames = [f for _, f in zip(range(5), source.frames(), strict=False)]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.frame.format.name == "yuv420p" for f in frames)
    assert all(f.wall_time.tzinfo is not None for f in frames)
    pts = [f.pts_seconds for f in frames if f.pts_seconds is not None]
    assert len(pts) == 5
    assert pts == sorted(pts)


def test_file_loops_and_paces_to_real_time(tmp_path: Path, sample_video: Path) -> None:
    clip = convert(sample_video, tmp_path / "short.h264", size=(320, 180), fps=25, seconds=0.6)
    config = SourceConfig(str(clip), realtime=True, loop=True)
    started = time.monotonic()
    last_pts = -1.0
    # 15 frames per pass: 40 frames go round the loop twice and must take real time.
    for n, decoded in enumerate(iter_frames(config), start=1):
        assert decoded.pts_seconds is not None
        assert decoded.pts_seconds > last_pts  # keeps going forward across the loop
        last_pts = decoded.pts_seconds
        if n == 40:
            break
    elapsed = time.monotonic() - started
    assert 39 / 25 * 0.9 <= elapsed <= 39 / 25 + 0.5
    assert last_pts == pytest.approx(39 / 25)


def test_file_without_loop_ends(sample_clips: SampleClips) -> None:
    with open_source(sample_clips.testsrc_360) as source:
        count = sum(1 for _ in source.frames())
    assert count == 100  # 4 s at 25 fps


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        open_source(tmp_path / "nope.mp4")


# -- RTSP ---------------------------------------------------------------------------------------


@pytest.mark.rtsp
def test_first_frame_quickly(rtsp_server: RtspServerProcess) -> None:
    elapsed, width, height = first_frame_after(rtsp_server.url("/real720"))
    assert (width, height) == (1280, 720)
    assert elapsed < 2.0


@pytest.mark.rtsp
def test_live_frames_are_paced_and_yuv420p(rtsp_server: RtspServerProcess) -> None:
    with open_source(rtsp_server.url("/real360"), read_timeout=READ_TIMEOUT) as source:
        assert (source.width, source.height, source.codec) == (640, 360, "h264")
        frames = []
        for decoded in source.frames():
            frames.append(decoded)
            if len(frames) == 40:
                break
    assert all(f.frame.format.name == "yuv420p" for f in frames)
    # The server paces at 25 fps; the first frames may arrive in a burst.
    span = frames[-1].monotonic - frames[10].monotonic
    assert 29 / 25 * 0.7 < span < 29 / 25 * 1.5


@pytest.mark.rtsp
def test_looping_mount_keeps_time_going_forward(
    tmp_path: Path, sample_video: Path, rtsp_server_factory: Callable[..., RtspServerProcess]
) -> None:
    # A 0.6 s clip loops twice within 40 frames; the server's restamping must hide the seams.
    clip = convert(sample_video, tmp_path / "short.h264", size=(320, 180), fps=25, seconds=0.6)
    server = rtsp_server_factory({"/short": clip})
    with open_source(server.url("/short"), read_timeout=READ_TIMEOUT) as source:
        pts = [f.pts_seconds for _, f in zip(range(40), source.frames(), strict=False)]
    steps = [b - a for a, b in itertools.pairwise(pts) if a is not None and b is not None]
    assert len(steps) >= 37
    assert all(step == pytest.approx(0.04, abs=0.002) for step in steps)


@pytest.mark.rtsp
def test_wrong_path_is_not_found(rtsp_server: RtspServerProcess) -> None:
    with pytest.raises(NotFound, match="no such stream"):
        open_source(rtsp_server.url("/does-not-exist"), open_timeout=OPEN_TIMEOUT)


@pytest.mark.rtsp
def test_closed_port_is_connection_refused(closed_port: int) -> None:
    with pytest.raises(ConnectionRefused):
        open_source(f"rtsp://127.0.0.1:{closed_port}/cam", open_timeout=OPEN_TIMEOUT)


@pytest.mark.rtsp
def test_silent_server_times_out_within_the_timeout(stall_server: StallServer) -> None:
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match="timed out"):
        open_source(stall_server.url(), open_timeout=1.5, read_timeout=READ_TIMEOUT)
    assert 1.3 <= time.monotonic() - started <= 1.5 + 0.5
    assert stall_server.accepted >= 1


@pytest.mark.rtsp
def test_server_killed_mid_stream_then_back_on_same_port(
    rtsp_server_factory: Callable[..., RtspServerProcess],
) -> None:
    server = rtsp_server_factory()
    url, port = server.url("/real360"), server.port
    with open_source(url, read_timeout=READ_TIMEOUT) as source:
        frames = source.frames()
        for _ in range(5):
            next(frames)
        server.kill()
        killed = time.monotonic()
        with pytest.raises(SourceError) as info:
            for _ in frames:
                pass
    assert time.monotonic() - killed <= READ_TIMEOUT
    assert isinstance(info.value, StreamEnded | SourceTimeout)

    # While it is down: refused, quickly.
    with pytest.raises(ConnectionRefused):
        open_source(url, open_timeout=OPEN_TIMEOUT)

    server.restart()
    assert server.port == port
    elapsed, width, _ = first_frame_after(url)
    assert width == 640
    assert elapsed < 2.0


@pytest.mark.rtsp
def test_server_stalling_mid_stream_times_out_within_read_timeout(
    rtsp_server_factory: Callable[..., RtspServerProcess],
) -> None:
    server = rtsp_server_factory()
    assert server.pid is not None
    with open_source(server.url("/real360"), read_timeout=READ_TIMEOUT) as source:
        frames = source.frames()
        next(frames)
        # SIGSTOP freezes the server with its sockets open: a camera that hangs.
        os.kill(server.pid, signal.SIGSTOP)
        try:
            stalled = time.monotonic()
            with pytest.raises(SourceTimeout):
                for _ in frames:
                    pass
            assert time.monotonic() - stalled <= READ_TIMEOUT + 0.3
        finally:
            os.kill(server.pid, signal.SIGCONT)


@pytest.mark.rtsp
def test_rtsp_credentials(rtsp_auth_server: RtspServerProcess) -> None:
    _, width, _ = first_frame_after(rtsp_auth_server.url("/real360", credentials=True))
    assert width == 640


@pytest.mark.rtsp
@pytest.mark.parametrize("password", ["wrong-Secret-42", None])
def test_rtsp_wrong_or_missing_password_is_unauthorized(
    rtsp_auth_server: RtspServerProcess, password: str | None
) -> None:
    url = (
        rtsp_auth_server.url("/real360", credentials=True, password=password)
        if password
        else rtsp_auth_server.url("/real360")
    )
    with pytest.raises(Unauthorized) as info:
        open_source(url, open_timeout=OPEN_TIMEOUT)
    if password:
        assert password not in str(info.value)
        assert password not in info.value.url
        assert "***@" in str(info.value)


@pytest.mark.rtsp
def test_basic_auth_server(rtsp_server_factory: Callable[..., RtspServerProcess]) -> None:
    server = rtsp_server_factory(user="viewer", password="b@sic:Pass", auth="basic")
    assert first_frame_after(server.url("/real360", credentials=True))[1] == 640
    with pytest.raises(Unauthorized):
        open_source(server.url("/real360", credentials=True, password="nope-nope"))


@pytest.mark.rtsp
def test_errors_never_contain_the_password(
    rtsp_server: RtspServerProcess, stall_server: StallServer, closed_port: int
) -> None:
    secret = RTSP_PASSWORD
    cred = "admin:" + secret.replace(":", "%3A").replace("@", "%40") + "@"
    urls = [
        rtsp_server.url("/nope").replace("rtsp://", f"rtsp://{cred}"),
        f"rtsp://{cred}127.0.0.1:{closed_port}/x",
        stall_server.url().replace("rtsp://", f"rtsp://{cred}"),
    ]
    for url in urls:
        with pytest.raises(SourceError) as info:
            open_source(url, open_timeout=1.0, read_timeout=1.0)
        text = f"{info.value} {info.value.url} {info.value!r}"
        assert secret not in text
        assert "Pa55" not in text
        assert info.value.__cause__ is None
        assert info.value.__context__ is None
