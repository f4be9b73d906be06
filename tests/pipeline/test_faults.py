"""Faults the running pipeline must survive, against real peers: the GStreamer RTSP server
(killed, frozen, restarted on its port), a server that accepts and sends nothing, a closed port,
the ONVIF test device, a worker killed with SIGKILL, and a data folder that runs full."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from retention import service as retention_service
from sample_streams import RtspServerProcess
from tests.conftest import FAST_PIPELINE, make_settings
from tests.peers.onvif_device import ONVIF_PASSWORD, ONVIF_USER, DeviceProfile, OnvifDevice
from tests.peers.rtsp import RTSP_PASSWORD, StallServer, unused_port
from tests.pipeline.conftest import (
    FACADE_PLAN,
    committed,
    gaps_of,
    recording_settled,
    running,
    segments_of,
    state_is,
    status_where,
    wait_for,
)
from tests.pipeline.disk import tiny_tmpfs
from vms.core.config import Settings
from vms.core.models import AuditEntry
from vms.pipeline.status import RecordingState

pytestmark = pytest.mark.rtsp

READ_TIMEOUT = FAST_PIPELINE.read_timeout_s
SEC = dt.timedelta(seconds=1)


def rtsp(url: str) -> dict[str, str]:
    return {"kind": "rtsp", "url": url}


def check_agrees(engine: Engine, data_dir: Path) -> None:
    """The retention check, with no grace period: files and index agree exactly."""
    with Session(engine) as session:
        report = retention_service.check(
            session=session, data_dir=data_dir, repair=False, grace=dt.timedelta(0)
        )
    assert report.ok, report
    assert report.files == report.rows


def test_server_killed_mid_stream_then_back_on_the_same_port(
    rtsp_server_factory: Callable[..., RtspServerProcess],
    iso_settings: Settings,
    iso_engine: Engine,
) -> None:
    server = rtsp_server_factory()
    port = server.port
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(server.url("/real360")), mask_plan=FACADE_PLAN)
    with running(iso_settings) as sup:
        wait_for(state_is(sup, camera.id, "streaming"), 15, "streaming")
        wait_for(lambda: segments_of(iso_engine, camera.id), 10, "a first segment")
        server.kill()
        killed = time.monotonic()
        down = wait_for(
            state_is(sup, camera.id, "reconnecting", "stalled"), READ_TIMEOUT + 2, "reconnecting"
        )
        assert time.monotonic() - killed <= READ_TIMEOUT + 0.5
        assert down.last_error
        time.sleep(1.5)  # down for a while: refused connections, backoff
        assert sup.status(camera.id).state.value == "reconnecting"
        before = segments_of(iso_engine, camera.id)
        server.start()
        assert server.port == port
        wait_for(state_is(sup, camera.id, "streaming"), 15, "streaming again")
        wait_for(
            lambda: len(segments_of(iso_engine, camera.id)) >= len(before) + 2,
            10,
            "new segments",
        )
        view = sup.status(camera.id)
    assert view.reconnects >= 1
    assert view.restarts == 0  # the worker reconnected; no process had to die
    after = [s for s in segments_of(iso_engine, camera.id) if s.id not in {b.id for b in before}]
    gaps = [g for g in gaps_of(iso_engine, camera.id) if g.reason == "camera_down"]
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap.end is not None
    last_before = max(s.end for s in before)
    first_after = min(s.start for s in after)
    # Segments and the gap tile the outage: the gap starts where footage stopped and ends
    # where it resumed.
    assert abs((gap.start - last_before).total_seconds()) < 0.2
    assert gap.end == first_after
    assert (gap.end - gap.start).total_seconds() >= 1.5
    check_agrees(iso_engine, iso_settings.data_dir)


def test_silent_and_frozen_servers_are_stalled_then_reconnected(
    rtsp_server_factory: Callable[..., RtspServerProcess],
    stall_server: StallServer,
    iso_settings: Settings,
    iso_engine: Engine,
) -> None:
    frozen = rtsp_server_factory()
    with committed(iso_engine) as f:
        silent_cam = f.camera(source=rtsp(stall_server.url()), mode="live")
        frozen_cam = f.camera(source=rtsp(frozen.url("/real360")), mode="live")
    with running(iso_settings) as sup:
        view = wait_for(state_is(sup, silent_cam.id, "stalled"), 10, "silent server stalled")
        assert "timed out" in (view.last_error or "")
        wait_for(lambda: sup.status(silent_cam.id).reconnects >= 2, 10, "reconnect attempts")
        assert stall_server.accepted >= 2

        wait_for(state_is(sup, frozen_cam.id, "streaming"), 15, "streaming")
        assert frozen.pid is not None
        os.kill(frozen.pid, signal.SIGSTOP)  # a camera that hangs with its sockets open
        try:
            stopped = time.monotonic()
            wait_for(state_is(sup, frozen_cam.id, "stalled"), READ_TIMEOUT + 2, "frozen stalled")
            assert time.monotonic() - stopped <= READ_TIMEOUT + 0.8
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        wait_for(state_is(sup, frozen_cam.id, "streaming"), 15, "streaming after thaw")
        assert sup.status(frozen_cam.id).reconnects >= 1
        assert sup.status(silent_cam.id).restarts == 0


def test_bad_sources_give_clear_errors_without_credentials(
    rtsp_server: RtspServerProcess,
    rtsp_auth_server: RtspServerProcess,
    onvif_device: OnvifDevice,
    iso_settings: Settings,
    iso_engine: Engine,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.INFO)  # workers log at the supervisor's level
    wrong = "Wr0ng-Pa55word"
    onvif = {"kind": "onvif", "host": onvif_device.host, "port": onvif_device.port}
    # A device that hands out a local file as its stream: never opened.
    hostile = OnvifDevice(
        [DeviceProfile("p0", "Files", 640, 360, 25, "file:///etc/passwd")]
    ).start()
    request.addfinalizer(hostile.stop)
    with committed(iso_engine) as f:
        cams = {
            "no such stream": f.camera(source=rtsp(rtsp_server.url("/does-not-exist"))),
            "connection refused": f.camera(source=rtsp(f"rtsp://127.0.0.1:{unused_port()}/x")),
            "credentials rejected": f.camera(
                source=rtsp(rtsp_auth_server.url("/real360", credentials=True, password=wrong))
            ),
            "rejected the credentials": f.camera(
                source={**onvif, "username": ONVIF_USER, "password": wrong}
            ),
            # TEST-NET-1: outside the camera networks, so not even connected to.
            "is not in the camera networks": f.camera(source=rtsp("rtsp://192.0.2.10:554/x")),
            "stream URI that is not rtsp:// or rtsps://: refused": f.camera(
                source={
                    "kind": "onvif",
                    "host": hostile.host,
                    "port": hostile.port,
                    "username": ONVIF_USER,
                    "password": ONVIF_PASSWORD,
                    "profile_token": "p0",
                }
            ),
        }
        good_onvif = f.camera(
            source={**onvif, "username": ONVIF_USER, "password": ONVIF_PASSWORD}, mode="live"
        )
    with running(iso_settings) as sup:
        for expected, camera in cams.items():
            view = wait_for(
                status_where(sup, camera.id, lambda v: bool(v.last_error)),
                20,
                f"an error for {expected}",
            )
            assert view.state.value == "reconnecting", view
            assert expected in (view.last_error or ""), view
        onvif_view = wait_for(state_is(sup, good_onvif.id, "streaming"), 20, "ONVIF streaming")
        assert (onvif_view.width, onvif_view.height) == (1280, 720)  # the best H.264 profile
        time.sleep(1.0)
        views = [sup.status(c.id) for c in cams.values()]
        pids = {c.id: sup.worker_pid(c.id) for c in cams.values()}
        time.sleep(1.0)
        assert {c.id: sup.worker_pid(c.id) for c in cams.values()} == pids  # nothing crashed
    assert all(v.restarts == 0 for v in views)
    out, err = capfd.readouterr()
    text = " ".join([out, err, caplog.text, *(repr(v) for v in views)])
    assert "Wr0ng" not in text
    assert "Pa55" not in text
    assert RTSP_PASSWORD not in text
    # The workers did log the failures (through the server's logging).
    assert "credentials rejected" in caplog.text


def test_worker_killed_mid_segment_is_restarted_and_files_match_the_index(
    rtsp_server: RtspServerProcess, iso_settings: Settings, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan=FACADE_PLAN)
    data_dir = iso_settings.data_dir
    with running(iso_settings) as sup:
        wait_for(lambda: segments_of(iso_engine, camera.id), 15, "a first segment")
        wait_for(lambda: list(data_dir.rglob("*.partial")), 5, "a segment being written")
        pid = sup.worker_pid(camera.id)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_partials = list(data_dir.rglob("*.partial"))
        new_pid = wait_for(
            lambda: (p := sup.worker_pid(camera.id)) not in (None, pid) and p, 10, "a new worker"
        )
        count = len(segments_of(iso_engine, camera.id))
        wait_for(state_is(sup, camera.id, "streaming"), 15, "streaming again")
        wait_for(lambda: len(segments_of(iso_engine, camera.id)) >= count + 2, 10, "new segments")
        view = sup.status(camera.id)
        assert sup.worker_pid(camera.id) == new_pid
    assert view.restarts == 1
    assert killed_partials
    assert not any(p.exists() for p in killed_partials)
    check_agrees(iso_engine, data_dir)
    gaps = gaps_of(iso_engine, camera.id)
    crash = [g for g in gaps if g.reason == "worker_crashed"]
    assert len(crash) == 1
    assert crash[0].end is not None
    with Session(iso_engine) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "recording.recovered")
        ).one()
    assert [d["path"] for d in entry.details["discarded_partial"]] == [
        p.relative_to(data_dir).as_posix() for p in killed_partials
    ]


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A 400 kB tmpfs as the data folder: the disk really runs full (ENOSPC)."""
    with tiny_tmpfs(tmp_path / "small-data", "400k") as mount:
        yield mount


def test_disk_full_stops_recording_and_keeps_indexed_footage(
    rtsp_server: RtspServerProcess,
    isolated_db_url: str,
    small_data_dir: Path,
    iso_engine: Engine,
) -> None:
    settings = make_settings(small_data_dir, isolated_db_url, pipeline=FAST_PIPELINE)
    with committed(iso_engine) as f:
        # No masking: full-detail footage fills the small disk within seconds.
        org = f.org()
        camera = f.camera(
            org,
            basis=f.basis(org, masking_required=False),
            source=rtsp(rtsp_server.url("/real360")),
            mask_plan={"version": 1},
        )
    with running(settings) as sup:
        view = wait_for(
            status_where(sup, camera.id, lambda v: v.recording is RecordingState.disk_full),
            30,
            "disk full",
        )
        assert "disk full" in (view.last_error or "")
        assert view.state.value == "streaming"  # live view would go on
        # The segment finished before the full one may still be committing its row.
        settled = recording_settled(iso_engine, camera.id, small_data_dir)
        wait_for(settled, 10, "the partial discarded and the index caught up")
        indexed = segments_of(iso_engine, camera.id)
        time.sleep(1.5)
        assert [s.id for s in segments_of(iso_engine, camera.id)] == [s.id for s in indexed]
    assert indexed
    for seg in indexed:
        assert hashlib.sha256((small_data_dir / seg.path).read_bytes()).hexdigest() == seg.sha256
    assert not list(small_data_dir.rglob("*.partial"))
    gaps = [g for g in gaps_of(iso_engine, camera.id) if g.reason == "disk_full"]
    assert len(gaps) == 1
    assert gaps[0].start >= max(s.end for s in indexed) - 0.1 * SEC
    check_agrees(iso_engine, small_data_dir)
