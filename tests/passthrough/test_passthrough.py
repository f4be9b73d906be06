"""Passthrough recording end to end: the pipeline pushes the plan to the masking test camera
through ONVIF Media2, records its H.264 as it comes, and checks keyframes; a firmware reset is
caught and what no check covers is quarantined; a camera that cannot mask falls back.

Real peers throughout: the camera is a GStreamer RTSP server that draws the masks into its
x264 stream, the device a SOAP service on the same WSDL the client uses, the database real.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable

import av
import cv2
import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from masking import compile_plan, parse_plan, plan_hash
from masking.incamera import MaskCheck, MaskColor
from registry import service as registry_service
from registry.models import PassthroughState, PassthroughStatus
from retention.models import MaskedBy, SegmentState
from sample_streams import RtspServerProcess
from tests.passthrough.conftest import PLAN, onvif_source, passthrough_camera, passthrough_settings
from tests.peers.onvif_device import DeviceProfile, MaskingRig, MaskSupport
from tests.pipeline.conftest import (
    committed,
    gaps_of,
    running,
    segments_of,
    state_is,
    status_where,
    wait_for,
)
from vms.core.config import Settings
from vms.core.db import utcnow
from vms.core.models import AuditEntry, Organisation, Role
from vms.pipeline import metrics
from vms.pipeline.live import PREVIEW_MASKED
from vms.pipeline.supervisor import PipelineSupervisor

pytestmark = [pytest.mark.rtsp]


def state_of(engine: Engine, camera_id: int) -> PassthroughState | None:
    with Session(engine) as session:
        return session.get(PassthroughState, camera_id)


def decoded_frames(path: str) -> list[av.VideoFrame]:
    with av.open(path) as container:
        return list(container.decode(container.streams.video[0]))


def test_verified_passthrough_records_the_cameras_own_masked_stream(
    masking_rig: MaskingRig, iso_settings: Settings, iso_engine: Engine
) -> None:
    camera = passthrough_camera(iso_engine, masking_rig)
    settings = passthrough_settings(iso_settings)
    with running(settings) as sup:
        segs = wait_for(
            lambda: s
            if len(s := [x for x in segments_of(iso_engine, camera.id)
                         if x.state is SegmentState.ok]) >= 3
            else None,
            30,
            "three verified segments",
        )  # fmt: skip
        view = sup.status(camera.id)
        exported = metrics.render(sup).decode()
        # The mask preview: the plan drawn over a frame that passed the check.
        request = sup.request_preview(camera.id, PREVIEW_MASKED)
        assert request is not None
        preview = wait_for(lambda: sup.preview(camera.id, request), 10, "the preview")
    picture = cv2.imdecode(np.frombuffer(preview.data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None
    assert picture.shape == (360, 640, 3)
    assert view.recording_path == "passthrough"
    assert view.passthrough_checks >= 3
    labels = f'camera_id="{camera.id}",organisation_id="{camera.organisation_id}"'
    assert f"vms_camera_passthrough{{{labels}}} 1.0" in exported
    assert f"vms_camera_passthrough_failed{{{labels}}} 0.0" in exported
    assert f"vms_camera_passthrough_verified_timestamp_seconds{{{labels}}}" in exported
    assert view.passthrough_failed is None
    # The device holds vms's masks, in vms's colour, and the camera draws them.
    assert masking_rig.device.masks, "no masks were pushed"
    state = state_of(iso_engine, camera.id)
    assert state is not None
    assert state.status is PassthroughStatus.verified
    assert state.plan_hash == plan_hash(PLAN)
    assert state.last_verified_at is not None
    color = MaskColor(*state.mask_color)  # type: ignore[misc]
    check = None
    for seg in segs[:3]:
        assert seg.masked_by is MaskedBy.camera
        assert (seg.width, seg.height, seg.codec) == (640, 360, "h264")
        frames = decoded_frames(str(settings.data_dir / seg.path))
        # Remuxed, not re-encoded: every frame of the camera is there (25 fps, ~1 s segments).
        assert len(frames) == seg.frames >= 20
        if check is None:
            w, h = frames[0].width, frames[0].height
            check = MaskCheck.build(parse_plan(PLAN), w, h)
        for frame in frames[:: max(1, len(frames) // 4)]:
            result = check.verify_frame(frame, color)
            assert result.ok, result.describe()
    # Segments tile time: each starts where the previous one ended.
    for a, b in itertools.pairwise(segs):
        assert abs((b.start - a.end).total_seconds()) < 0.05


class LiveWatcher:
    """A viewer of the camera's live view, in a thread: keeps every JPEG it gets."""

    def __init__(self, sup: PipelineSupervisor, camera_id: int, watching: bool = True) -> None:
        self.sup, self.camera_id, self.watching = sup, camera_id, watching
        self.images: list[tuple[float, np.ndarray]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveWatcher:
        if self.watching:
            wait_for(lambda: self.sup.add_viewer(self.camera_id), 10, "a live slot")
            self._thread.start()
        return self

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            image = self.sup.latest_frame(self.camera_id, seq)
            if image is not None:
                seq = image.seq
                bgr = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
                assert bgr is not None, "an undecodable JPEG"
                self.images.append((time.monotonic(), bgr))
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        if self.watching:
            self._stop.set()
            self._thread.join(timeout=5)
            self.sup.remove_viewer(self.camera_id)


def masked_share(bgr: np.ndarray, color: MaskColor) -> float:
    """Of the plan's anonymised pixels (away from the edges), the share masked: in the camera's
    mask colour, or in the plan's own fill (black) once vms masks."""
    h, w = bgr.shape[:2]
    anon = compile_plan(parse_plan(PLAN), w, h).anon_mask > 0
    inner = cv2.erode(anon.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    pixels = bgr[inner].astype(np.float64)
    purple = np.linalg.norm(pixels - np.array(color.rgb())[::-1], axis=1) < 60
    black = pixels.max(axis=1) < 24
    return float((purple | black).mean())


def test_live_view_from_a_substream_is_masked_by_vms_while_passthrough_records(
    masking_rig_factory: Callable[..., MaskingRig],
    rtsp_server: RtspServerProcess,
    iso_settings: Settings,
    iso_engine: Engine,
) -> None:
    """The camera masks its main stream only (what vms checks and records); its substream comes
    unmasked. Live view from the substream is masked by vms (the plan's black fill), so what
    viewers see never depends on what the camera draws, and the main stream is not decoded for
    them."""
    sub = DeviceProfile("sub", "SubStream", 640, 360, 25, rtsp_server.url("/real360"))
    rig = masking_rig_factory(extra_profiles=[sub])
    camera = passthrough_camera(
        iso_engine, rig, source={**onvif_source(rig), "live_profile_token": "sub"}
    )
    settings = passthrough_settings(iso_settings)
    with running(settings) as sup:
        wait_for(
            lambda: [x for x in segments_of(iso_engine, camera.id) if x.state is SegmentState.ok],
            30,
            "a verified segment",
        )
        with LiveWatcher(sup, camera.id) as viewer:
            view = wait_for(
                status_where(sup, camera.id, lambda v: v.live_stream == "substream"),
                20,
                "live view from the substream",
            )
            since = time.monotonic() + 0.5
            wait_for(lambda: len([t for t, _ in viewer.images if t > since]) >= 5, 10, "frames")
        segs = segments_of(iso_engine, camera.id)
    assert view.recording_path == "passthrough"
    assert view.passthrough_failed is None
    state = state_of(iso_engine, camera.id)
    assert state is not None
    color = MaskColor(*state.mask_color)  # type: ignore[misc]
    for _, bgr in viewer.images:
        assert masked_share(bgr, color) > 0.95  # whichever stream it came from
    h, w = 360, 640
    anon = compile_plan(parse_plan(PLAN), w, h).anon_mask > 0
    inner = cv2.erode(anon.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    from_sub = [bgr for t, bgr in viewer.images if t > since]
    for bgr in from_sub:
        # vms's fill (black), not the camera's colour: the substream was masked here.
        assert bgr[inner].max(axis=1).mean() < 24
        assert bgr[~anon].mean() > 40
    # The recording is still the camera's own masked stream.
    assert all(s.masked_by is MaskedBy.camera for s in segs if s.state is SegmentState.ok)


@pytest.mark.parametrize("watching", [True, False], ids=["watched", "unwatched"])
def test_a_firmware_reset_is_caught_within_one_interval_and_nothing_unmasked_gets_out(
    masking_rig: MaskingRig, iso_settings: Settings, iso_engine: Engine, watching: bool
) -> None:
    """Unwatched, the keyframe checks catch it; watched, every frame shown is checked too."""
    camera = passthrough_camera(iso_engine, masking_rig)
    settings = passthrough_settings(iso_settings)
    interval = settings.pipeline.passthrough_verify_s
    with running(settings) as sup, LiveWatcher(sup, camera.id, watching) as viewer:
        wait_for(
            lambda: [x for x in segments_of(iso_engine, camera.id) if x.state is SegmentState.ok],
            30,
            "a verified segment",
        )
        if watching:
            wait_for(lambda: len(viewer.images) >= 5, 10, "live frames")
        reset_mono, reset_at = time.monotonic(), dt.datetime.now(dt.UTC)
        masking_rig.forget_masks()  # firmware reset: the camera draws nothing any more
        state = wait_for(
            lambda: st if (st := state_of(iso_engine, camera.id)) and st.failed_at else None,
            15,
            "the failed check in the camera's record",
        )
        failed_mono = time.monotonic()
        view = wait_for(
            status_where(sup, camera.id, lambda v: v.recording_path == "transcode"
                         and v.recording.value == "recording"),
            30,
            "the camera recording through transcoding",
        )  # fmt: skip
        # A few seconds of the transcode path, for the gap and the segments after it.
        time.sleep(2.0)
        segs = segments_of(iso_engine, camera.id)
        gaps = gaps_of(iso_engine, camera.id)
    assert state.status is PassthroughStatus.failed
    assert state.reason == "unmasked"
    assert state.failed_at is not None
    caught_after = (state.failed_at - reset_at).total_seconds()
    print(f"firmware reset caught after {caught_after:.2f}s (checks every {interval:g}s)")
    # One interval, plus the wait for the next keyframe (1 s here), plus delivery.
    assert caught_after <= interval + 1.0 + 0.5
    assert failed_mono - reset_mono < 15
    assert view.passthrough_failed is not None
    assert "unmasked" in view.passthrough_failed
    color = MaskColor(*state.mask_color)  # type: ignore[misc]
    # Nothing unmasked reached the viewer: every frame shown was masked.
    if watching:
        shares = [masked_share(bgr, color) for _, bgr in viewer.images]
        shown_after_reset = [t for t, _ in viewer.images if t > reset_mono]
        print(f"live: {len(shares)} frames, least masked {min(shares):.3f}, "
              f"{len(shown_after_reset)} shown after the reset (by transcoding)")  # fmt: skip
        assert min(shares) > 0.95, shares
    # Nothing unmasked is playable: every frame of every ok camera-masked segment passes.
    ok_camera = [x for x in segs if x.state is SegmentState.ok and x.masked_by is MaskedBy.camera]
    quarantined = [x for x in segs if x.state is SegmentState.quarantined]
    story = [(x.state.value, x.masked_by.value, x.frames) for x in segs]
    assert ok_camera, story
    assert quarantined, story
    check = MaskCheck.build(parse_plan(PLAN), 640, 360)
    for seg in ok_camera:
        for frame in decoded_frames(str(settings.data_dir / seg.path)):
            assert check.verify_frame(frame, color).ok, seg.path
    # ... and what no check covered is quarantined, unmasked frames and all.
    assert all(x.masked_by is MaskedBy.camera for x in quarantined)
    unmasked = [
        f for x in quarantined for f in decoded_frames(str(settings.data_dir / x.path))
        if check.verify_frame(f, color).reason == "unmasked"
    ]  # fmt: skip
    assert unmasked, f"the quarantined segment holds the unmasked frames: {story}"
    # After the fallback, vms masks (transcoding) and says where footage was missing.
    assert any(x.masked_by is MaskedBy.vms and x.state is SegmentState.ok for x in segs)
    assert any(g.reason == "passthrough_failed" for g in gaps), [(g.reason, g.detail) for g in gaps]
    with Session(iso_engine) as session:
        actions = [a.action for a in session.scalars(select(AuditEntry))]
    assert "camera.passthrough_failed" in actions


@pytest.mark.parametrize(
    ("rig_options", "reason"),
    [
        ({"masks": None}, "device_unsupported"),  # Media2 without privacy masks
        ({"media2": False, "masks": None}, "device_unsupported"),  # no Media2 at all
        ({"masks": MaskSupport(max_masks=1, max_points=4)}, "plan_unsupported"),  # too few
    ],
    ids=["no-masks", "no-media2", "too-few-masks"],
)
def test_a_camera_that_cannot_mask_falls_back_to_transcoding(
    masking_rig_factory: Callable[..., MaskingRig],
    iso_settings: Settings,
    iso_engine: Engine,
    rig_options: dict[str, object],
    reason: str,
) -> None:
    rig = masking_rig_factory(**rig_options)
    camera = passthrough_camera(iso_engine, rig)
    with running(passthrough_settings(iso_settings)) as sup:
        view = wait_for(
            status_where(sup, camera.id, lambda v: v.recording_path == "transcode"
                         and v.recording.value == "recording"),
            30,
            "the camera recording through transcoding",
        )  # fmt: skip
        segs = wait_for(lambda: segments_of(iso_engine, camera.id), 15, "a segment")
    state = state_of(iso_engine, camera.id)
    assert state is not None
    assert state.status is PassthroughStatus.unsupported
    assert state.reason == reason
    assert view.passthrough_failed is not None
    assert reason in view.passthrough_failed
    # Nothing of the camera's own stream was kept: vms masked all of it.
    assert all(s.masked_by is MaskedBy.vms and s.state is SegmentState.ok for s in segs)
    assert not rig.device.masks


def test_the_block_fallback_stops_the_camera_and_retry_tries_again(
    masking_rig: MaskingRig, iso_settings: Settings, iso_engine: Engine
) -> None:
    camera = passthrough_camera(iso_engine, masking_rig)
    settings = passthrough_settings(iso_settings, passthrough_fallback="block")
    with running(settings) as sup:
        wait_for(
            status_where(sup, camera.id, lambda v: v.passthrough_checks > 0), 30, "a passing check"
        )
        masking_rig.forget_masks()
        view = wait_for(state_is(sup, camera.id, "blocked"), 30, "the camera blocked")
        assert any("passthrough" in r for r in view.reasons), view.reasons
        assert sup.worker_pid(camera.id) is None
        assert not sup.live_allowed(camera.id)
        # The camera is fixed (here: the device is asked again); a facility manager retries.
        with committed(iso_engine) as f:
            fm = f.user(Role.facility_manager, f.session.get(Organisation, camera.organisation_id))
            registry_service.retry_passthrough(session=f.session, actor=fm.principal,
                                               camera_id=camera.id)  # fmt: skip
        retried = dt.datetime.now(dt.UTC)
        wait_for(
            status_where(sup, camera.id, lambda v: v.recording_path == "passthrough"
                         and (v.passthrough_verified_at or retried) > retried),
            30,
            "passthrough verified again",
        )  # fmt: skip
    state = state_of(iso_engine, camera.id)
    assert state is not None
    assert state.status is PassthroughStatus.verified
    with Session(iso_engine) as session:
        actions = [a.action for a in session.scalars(select(AuditEntry))]
    assert "camera.passthrough_retry" in actions


class RecordLock:
    """Holds the camera's passthrough record against writers, as a busy database does (on
    SQLite the whole database's write lock, on PostgreSQL the record's row)."""

    def __init__(self, engine: Engine, camera_id: int) -> None:
        self.engine, self.camera_id = engine, camera_id
        self._release = threading.Event()
        self._taken = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        if self.engine.dialect.name == "sqlite":
            import sqlite3

            raw = sqlite3.connect(str(self.engine.url.database), isolation_level=None)
            try:
                raw.execute("BEGIN IMMEDIATE")
                self._taken.set()
                self._release.wait(60)
                raw.execute("ROLLBACK")
            finally:
                raw.close()
            return
        with self.engine.connect() as conn:
            conn.execute(
                select(PassthroughState)
                .where(PassthroughState.camera_id == self.camera_id)
                .with_for_update()
            )
            self._taken.set()
            self._release.wait(60)
            conn.rollback()

    def __enter__(self) -> RecordLock:
        self._thread.start()
        assert self._taken.wait(10), "the lock was not taken"
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._thread.join(10)


def test_a_busy_database_does_not_stop_a_verified_camera(
    masking_rig: MaskingRig, iso_settings: Settings, iso_engine: Engine
) -> None:
    """The record write due every 30 s waits behind a lock held for 18 s (a database busy with
    other cameras): the checks go on meanwhile, nothing is given up, and the camera records on.
    (Written on the worker's main thread, the wait left it behind its packets and the keyframe
    deadline stopped the camera as keyframes_too_rare.)"""
    camera = passthrough_camera(iso_engine, masking_rig)
    settings = passthrough_settings(iso_settings)
    with running(settings) as sup:
        wait_for(
            lambda: (
                (s := state_of(iso_engine, camera.id)) is not None
                and s.status is PassthroughStatus.verified
                and s.last_verified_at is not None
            ),
            30,
            "verified",
        )
        verified = time.monotonic()
        # The next write of the record is due 30 s after the first verification.
        time.sleep(max(0.0, verified + 25 - time.monotonic()))
        with RecordLock(iso_engine, camera.id):
            time.sleep(18)
        released = utcnow()
        wait_for(
            lambda: [
                s
                for s in segments_of(iso_engine, camera.id)
                if s.state is SegmentState.ok and s.start >= released
            ],
            20,
            "verified footage after the lock",
        )
        view = sup.status(camera.id)
        # Before the stop (which quarantines what is held since the last check).
        kinds = [s.state for s in segments_of(iso_engine, camera.id)]
    assert SegmentState.quarantined not in kinds, kinds
    assert view.passthrough_failed is None, view.passthrough_failed
    assert view.recording_path == "passthrough"
    state = state_of(iso_engine, camera.id)
    assert state is not None
    assert state.status is PassthroughStatus.verified, (state.status, state.reason)
