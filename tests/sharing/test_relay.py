"""The RTSP relay on its own: the real GStreamer relay process fed by the worker-side feed (masked
frames encoded, or packets forwarded unchanged), pulled by PyAV clients. Per-session digest
credentials, revocation closing connections at once, fan-out from one camera to several
sessions, nothing sent while nobody watches, passthrough without re-encoding, and the service
restarting a dead relay with its grants."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from sqlalchemy.orm import sessionmaker

from sample_streams import gst_problem
from tests.peers.rtsp import SampleClips
from tests.pipeline.conftest import wait_for
from vms.core.auth import Principal
from vms.core.config import Settings, SharingSettings
from vms.core.db import make_engine
from vms.core.models import Role
from vms.pipeline.relay import RELAY_SCRIPT, SYSTEM_PYTHON, RelayService
from vms.pipeline.relay_feed import RelayFeed

pytestmark = [pytest.mark.rtsp, pytest.mark.nodb]

OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32768"}
# Generous: three processes (relay, feed, client) share a machine other test runs load too.
OPEN_TIMEOUT = (10.0, 10.0)


class Relay:
    """relay_server.py as a child process, driven through its stdin like RelayService does."""

    def __init__(self, tmp: Path) -> None:
        problem = gst_problem()
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        self.ingest = str(tmp / "ingest.sock")
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, "-u", str(RELAY_SCRIPT), "--port", "0", "--ingest", self.ingest],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=10), "the relay did not start"
        self.port = int(self.proc.stdout.readline().split()[1])
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def grant(self, session: str, camera: int, password: str = "pw-" + "x" * 20) -> str:
        self.send(op="grant", session=session, camera=camera, username=session, password=password)
        wait_for(lambda: self.event("granted", session), 5, f"grant of {session}")
        return self.url(session, session, password)

    def url(self, session: str, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/share/{session}"

    def event(self, kind: str, session: str) -> dict[str, Any] | None:
        return next(
            (e for e in self.events if e["event"] == kind and e.get("session") == session), None
        )

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    r = Relay(tmp_path)
    yield r
    r.close()


class Camera:
    """A camera worker's relay side: frames of a real clip, paced at 25 fps, either encoded
    (`RelayFeed.feed`, what the worker does with masked frames) or forwarded as packets
    (`RelayFeed.forward`, a passthrough camera)."""

    def __init__(self, ingest: str, camera_id: int, clip: Path, *, passthrough: bool) -> None:
        self.feed = RelayFeed.connect(ingest, camera_id)
        self.clip = clip
        self.passthrough = passthrough
        self.sent: list[bytes] = []
        self.sent_at: dict[bytes, float] = {}  # passthrough: when each unit was last sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set():
            with av.open(str(self.clip), format="h264") as src:
                stream = src.streams.video[0]
                items = src.demux(stream) if self.passthrough else src.decode(stream)
                for item in items:
                    if self._stop.is_set():
                        return
                    now = time.monotonic()
                    if self.feed.wanted:
                        if isinstance(item, av.Packet):
                            if item.size:
                                data = bytes(item)
                                extradata = stream.codec_context.extradata
                                key = item.is_keyframe
                                self.feed.forward(data, key=key, mono=now, extradata=extradata)
                                self.sent.append(data)
                                self.sent_at[data] = time.monotonic()
                        else:
                            self.feed.feed(item, now)
                    n += 1
                    time.sleep(max(0.0, t0 + n / 25 - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.feed.close()


@contextlib.contextmanager
def camera(relay: Relay, clip: Path, camera_id: int = 7, passthrough: bool = False) -> Iterator[
    Camera
]:  # fmt: skip
    cam = Camera(relay.ingest, camera_id, clip, passthrough=passthrough)
    try:
        yield cam
    finally:
        cam.close()


def _frames(url: str, n: int) -> list[av.VideoFrame]:
    out = []
    with av.open(url, options=OPTIONS, timeout=OPEN_TIMEOUT) as client:
        for frame in client.decode(video=0):
            out.append(frame)
            if len(out) == n:
                break
    return out


def test_credentials_open_only_their_own_session(relay: Relay, sample_clips: SampleClips) -> None:
    with camera(relay, sample_clips.real_360):
        url_a = relay.grant("a1", 7, "secret-a-0123456789")
        relay.grant("b2", 7, "secret-b-0123456789")
        assert len(_frames(url_a, 5)) == 5
        for refused in (relay.url("a1"), relay.url("a1", "a1", "wrong")):  # none, wrong password
            with pytest.raises(av.error.HTTPUnauthorizedError):
                av.open(refused, options=OPTIONS, timeout=OPEN_TIMEOUT)
        # Valid credentials on another session's mount, or on none: 404, nothing revealed.
        for elsewhere in ("b2", "zz"):
            with pytest.raises(av.error.HTTPNotFoundError):
                av.open(relay.url(elsewhere, "a1", "secret-a-0123456789"), options=OPTIONS,
                        timeout=OPEN_TIMEOUT)  # fmt: skip


def test_revoking_closes_open_connections_at_once_and_removes_the_mount(
    relay: Relay, sample_clips: SampleClips
) -> None:
    with camera(relay, sample_clips.real_360):
        url = relay.grant("s1", 7)
        with av.open(url, options=OPTIONS, timeout=OPEN_TIMEOUT) as client:
            frames = client.decode(video=0)
            for _ in range(10):
                next(frames)
            relay.send(op="revoke", session="s1")
            revoked = time.monotonic()
            with contextlib.suppress(av.error.FFmpegError):
                for _ in frames:
                    assert time.monotonic() - revoked < 5, "still streaming after revocation"
            closed_after = time.monotonic() - revoked
        assert closed_after < 0.5, closed_after
        # The relay reports after it closed the connections; its line may still be in the pipe.
        revoked_event = wait_for(lambda: relay.event("revoked", "s1"), 5, "the revoked event")
        assert revoked_event == {"event": "revoked", "session": "s1", "clients": 1}
        with pytest.raises((av.error.HTTPNotFoundError, av.error.HTTPUnauthorizedError)):
            av.open(url, options=OPTIONS, timeout=OPEN_TIMEOUT)


def test_one_camera_fans_out_to_several_sessions_each_from_a_keyframe(
    relay: Relay, sample_clips: SampleClips
) -> None:
    # Passthrough: the camera makes no keyframe on demand; new viewers start from the GOP the
    # relay holds in memory instead of queueing for the next keyframe one DESCRIBE at a time.
    with camera(relay, sample_clips.real_360, passthrough=True):
        urls = [relay.grant(f"f{i}", 7) for i in range(6)]
        results: dict[int, list[bool]] = {}

        def pull(i: int) -> None:
            with av.open(urls[i], options=OPTIONS, timeout=OPEN_TIMEOUT) as client:
                keys = []
                for packet in client.demux(video=0):
                    if packet.size:
                        keys.append(packet.is_keyframe)
                    if len(keys) == 30:
                        break
                results[i] = keys

        started = time.monotonic()
        threads = [threading.Thread(target=pull, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        took = time.monotonic() - started
        assert sorted(results) == list(range(6))
        assert all(keys[0] for keys in results.values()), "a session started between keyframes"
        # 30 frames are 1.2 s of video; one keyframe wait per viewer in turn would be ~6 s more.
        assert took < 4.0, took


def test_the_feed_sends_nothing_while_nobody_watches(
    relay: Relay, sample_clips: SampleClips
) -> None:
    with camera(relay, sample_clips.real_360) as cam:
        link = cam.feed.link
        wait_for(lambda: link.connects, 5, "the feed to connect")
        time.sleep(0.5)
        assert not link.wanted
        assert link.sent == 0  # no viewer: nothing encoded, nothing sent
        url = relay.grant("w1", 7)
        assert len(_frames(url, 10)) == 10
        relay.send(op="revoke", session="w1")
        wait_for(lambda: not link.wanted, 5, "the relay to tell the camera nobody watches")
        time.sleep(0.3)
        sent = link.sent
        time.sleep(0.5)
        assert link.sent == sent


def test_passthrough_forwards_the_cameras_packets_without_reencoding(
    relay: Relay, sample_clips: SampleClips
) -> None:
    with camera(relay, sample_clips.real_360, passthrough=True) as cam:
        url = relay.grant("p1", 7)
        with av.open(url, options=OPTIONS, timeout=OPEN_TIMEOUT) as client:
            received = []
            for packet in client.demux(video=0):
                if packet.size:
                    received.append(bytes(packet))
                if len(received) == 50:
                    break
        sent = cam.sent
        # Byte for byte the camera's access units (bar keyframes, which get SPS/PPS before them).
        same = [p for p in received if not p.startswith(b"\x00\x00\x00\x01\x67")]
        assert len(same) > 40
        assert set(same) <= set(sent)
        assert len(_frames(url, 5)) == 5


def test_a_viewer_after_an_idle_spell_gets_no_stale_pictures(
    relay: Relay, sample_clips: SampleClips
) -> None:
    with camera(relay, sample_clips.real_360, passthrough=True) as cam:
        url = relay.grant("i1", 7)
        assert len(_frames(url, 10)) == 10
        relay.send(op="revoke", session="i1")
        wait_for(lambda: not cam.feed.link.wanted, 5, "the camera to go idle")
        time.sleep(1.0)
        granted = time.monotonic()
        url = relay.grant("i2", 7)
        with av.open(url, options=OPTIONS, timeout=OPEN_TIMEOUT) as client:
            packets = []
            for packet in client.demux(video=0):
                if packet.size:
                    packets.append(bytes(packet))
                if len(packets) == 3:
                    break
        # Units not held over from before the idle spell: sent after the new viewer came.
        sent = [cam.sent_at[p] for p in packets[1:] if p in cam.sent_at]
        assert sent, "the client's units are not the camera's"
        assert min(sent) >= granted - 0.05, (granted, sent)


def test_the_service_restarts_a_dead_relay_on_its_port_with_its_grants(
    tmp_path: Path, settings: Settings, sample_clips: SampleClips
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'relay.db'}")
    from vms.all_models import Base

    Base.metadata.create_all(engine)
    # The test drives the re-check itself.
    quiet = settings.model_copy(update={"sharing": SharingSettings(rtsp_port=0, recheck_s=30)})
    service = RelayService(quiet, sessionmaker(bind=engine))
    principal = Principal(user_id=1, email="p@example.se", organisation_id=1, role=Role.police)
    try:
        service.start()
        assert service.running, service.error
        port = service.port
        password = service.grant(key="r1", session_id=1, camera_id=7, principal=principal)
        url = service.url("r1").replace("rtsp://", f"rtsp://r1:{password}@")
        with camera_for(service.ingest_path, sample_clips.real_360):
            assert len(_frames(url, 5)) == 5
            proc = service._proc
            assert proc is not None
            proc.kill()
            proc.wait()
            service.check()
            assert service.running
            assert service.port == port
            assert service.restarts == 1
            assert len(_frames(url, 5)) == 5
    finally:
        service.stop()
        engine.dispose()
    assert not os.path.exists(service.ingest_path)


@contextlib.contextmanager
def camera_for(ingest: str, clip: Path) -> Iterator[Camera]:
    cam = Camera(ingest, 7, clip, passthrough=False)
    try:
        yield cam
    finally:
        cam.close()
