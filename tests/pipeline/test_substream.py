"""Live view from a camera's ONVIF substream while its main stream is recorded: against the
real ONVIF test device (profiles "main", 1280x720, and "sub", 640x360, on the credential-
protected GStreamer RTSP server) and the whole server."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine

from masking import Masker, compile_plan, parse_plan
from tests.peers.onvif_device import ONVIF_PASSWORD, ONVIF_USER, OnvifDevice
from tests.pipeline.conftest import (
    FACADE_PLAN,
    LiveServer,
    committed,
    segments_of,
    state_is,
    status_where,
    wait_for,
)
from tests.pipeline.test_api import decode, mjpeg_frames
from vms.core.models import Role
from vms.pipeline.config import PolicyFlags, SourceSpec, WorkerConfig
from vms.pipeline.substream import Substream, live_config

pytestmark = pytest.mark.rtsp

FILLED_FACADE = {**FACADE_PLAN, "method": "fill"}


def anonymised(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The plan's anonymised pixels at this size (eroded: JPEG blurs the edges) and its kept."""
    anon = compile_plan(parse_plan(FILLED_FACADE), width, height).anon_mask > 0
    inner = cv2.erode(anon.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    return inner, ~anon


def assert_masked(image: np.ndarray) -> None:
    inner, kept = anonymised(image.shape[1], image.shape[0])
    assert image[inner].max() <= 40, "the plan's anonymised area shows the scene"
    assert image[kept].mean() > 40, "the kept strip is not shown"


def onvif_source(device: OnvifDevice, **tokens: str) -> dict[str, object]:
    return {
        "kind": "onvif",
        "host": device.host,
        "port": device.port,
        "username": ONVIF_USER,
        "password": ONVIF_PASSWORD,
        **tokens,
    }


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=20) as c:
        yield c


def live_frames(api: httpx.Client, path: str, headers: dict[str, str], want: int) -> list[bytes]:
    out: list[bytes] = []
    with api.stream("GET", path, headers=headers) as live:
        assert live.status_code == 200, live.read()
        for jpeg in mjpeg_frames(live):
            out.append(jpeg)
            if len(out) >= want:
                break
    return out


def test_live_view_from_the_substream_while_the_main_stream_is_recorded(
    onvif_device: OnvifDevice, live_server: LiveServer, api: httpx.Client, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        org = f.org()
        camera = f.camera(
            org,
            source=onvif_source(onvif_device, profile_token="main", live_profile_token="sub"),
            mask_plan=FILLED_FACADE,
        )
        operator = f.user(Role.operator, org)
        manager = f.user(Role.facility_manager, org)
    base = f"/api/v1/cameras/{camera.id}"
    sup = live_server.pipeline
    view = wait_for(state_is(sup, camera.id, "streaming"), 30, "streaming")
    assert (view.width, view.height) == (1280, 720)
    assert view.live_stream is None  # nobody watches: the substream is not even open

    # A viewer: the first pictures may come from the main stream (masked) while the substream
    # connects; then it is the substream's 640x360, masked by vms with the same plan.
    frames = [decode(j) for j in live_frames(api, f"{base}/live.mjpeg", operator.headers, 60)]
    sizes = [image.shape[:2] for image in frames]
    assert set(sizes) <= {(720, 1280), (360, 640)}, sizes
    assert sizes[-1] == (360, 640), sizes
    for image in frames:
        assert_masked(image)
    # The substream stays open a while after the viewer left, so a reload is instant; status
    # tells which stream viewers see.
    with api.stream("GET", f"{base}/live.mjpeg", headers=operator.headers) as live:
        jpegs = mjpeg_frames(live)  # kept: a generator dropped closes the response
        first = decode(next(jpegs))
        assert first.shape[:2] == (360, 640)
        assert_masked(first)

        def watched() -> dict[str, object] | None:
            body: dict[str, object] = api.get(f"{base}/status", headers=manager.headers).json()
            return body if body["live_stream"] else None

        status = wait_for(watched, 5, "a status with the viewer")
        assert status["live_stream"] == "substream"
        assert status["resolution"] == {"width": 1280, "height": 720}  # what is recorded
    wait_for(status_where(sup, camera.id, lambda v: v.live_stream is None), 10, "no viewer")

    # The recording is the main stream's.
    wait_for(lambda: segments_of(iso_engine, camera.id), 20, "a segment")
    assert {(s.width, s.height) for s in segments_of(iso_engine, camera.id)} == {(1280, 720)}
    # The API says what is configured; the probe suggests the substream.
    source = api.get(base, headers=manager.headers).json()["source"]
    assert (source["profile_token"], source["live_profile_token"]) == ("main", "sub")
    probe = api.post(
        "/api/v1/onvif/probe",
        json={
            "host": onvif_device.host,
            "port": onvif_device.port,
            "username": ONVIF_USER,
            "password": ONVIF_PASSWORD,
        },
        headers=manager.headers,
    ).json()
    assert (probe["recommended_profile_token"], probe["recommended_live_profile_token"]) == (
        "main",
        "sub",
    )


def test_a_live_profile_that_does_not_deliver_leaves_live_view_on_the_main_stream(
    onvif_device: OnvifDevice, live_server: LiveServer, api: httpx.Client, iso_engine: Engine
) -> None:
    """A wrong token (or a camera whose second encoder is off): viewers still get masked
    pictures, from the main stream, and the status says why."""
    with committed(iso_engine) as f:
        org = f.org()
        camera = f.camera(
            org,
            source=onvif_source(onvif_device, profile_token="main", live_profile_token="nosuch"),
            mask_plan=FILLED_FACADE,
        )
        operator = f.user(Role.operator, org)
    base = f"/api/v1/cameras/{camera.id}"
    sup = live_server.pipeline
    wait_for(state_is(sup, camera.id, "streaming"), 30, "streaming")
    seen: list[str | None] = []
    with api.stream("GET", f"{base}/live.mjpeg", headers=operator.headers) as live:
        deadline = time.monotonic() + 20
        for jpeg in mjpeg_frames(live):
            image = decode(jpeg)
            assert image.shape[:2] == (720, 1280)
            assert_masked(image)
            view = sup.status(camera.id)
            seen.append(view.last_error)
            if "live substream" in (view.last_error or "") or time.monotonic() > deadline:
                break
    assert view.state.value == "streaming"
    assert view.live_stream == "main"
    assert "live substream" in (view.last_error or ""), seen
    assert "nosuch" in (view.last_error or "")
    assert ONVIF_PASSWORD not in (view.last_error or "")


def test_the_substream_reads_only_while_someone_watches(onvif_device: OnvifDevice) -> None:
    """The reader opens on the first viewer, delivers masked frames, lingers, then stops."""
    config = WorkerConfig(
        camera_id=991,
        organisation_id=1,
        mode="live_and_recording",
        source=SourceSpec(
            kind="onvif",
            onvif_host=onvif_device.host,
            onvif_port=onvif_device.port,
            username=ONVIF_USER,
            password=ONVIF_PASSWORD,
            profile_token="main",
            live_profile_token="sub",
        ),
        mask_plan=FILLED_FACADE,
        mask_plan_hash=None,
        policy=PolicyFlags(True, True),
        data_dir="/nonexistent",
        db_url="sqlite://",
        open_timeout_s=3.0,
        read_timeout_s=3.0,
        stall_seconds=4.0,
    )
    live = live_config(config)
    assert live is not None
    assert live.source.profile_token == "sub"
    # No separate live profile where there is nothing to gain or no live view at all.
    for other in (
        dataclasses.replace(config, mode="recording"),
        dataclasses.replace(
            config, source=SourceSpec(kind="onvif", profile_token="s", live_profile_token="s")
        ),
        dataclasses.replace(
            config, source=SourceSpec(kind="rtsp", url="rtsp://x/y", live_profile_token="sub")
        ),
    ):
        assert live_config(other) is None

    sub = Substream(live, lambda: Masker(FILLED_FACADE), linger_s=1.0)

    def readers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "live-reader-991"]

    t0 = time.monotonic()
    sub.want(False, t0)
    assert not sub.running
    assert not readers()
    sub.want(True, t0)
    assert sub.running
    frame = wait_for(lambda: sub.latest(), 20, "a substream frame")
    assert (frame.frame.width, frame.frame.height) == (640, 360)
    assert sub.delivering(time.monotonic())
    masked = sub.mask(frame)
    assert masked is not None
    assert_masked(masked.to_ndarray(format="bgr24"))
    now = time.monotonic()
    sub.want(False, now)
    sub.want(False, now + 0.5)
    assert sub.running  # lingering
    sub.want(False, now + 1.0)
    assert not sub.running
    wait_for(lambda: not readers(), 10, "the reader thread gone")
    assert not sub.delivering(time.monotonic())
