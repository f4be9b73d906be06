"""The running pipeline against the real RTSP server: masked segments on disk that match the
index, and the camera's policy enforced at run time."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from masking import compile_plan, parse_plan, plan_hash
from permits.models import BasisStatus, LegalBasis
from registry.models import Camera, CameraMode
from retention import service as retention_service
from retention.models import Segment
from sample_streams import RtspServerProcess
from tests.conftest import FAST_PIPELINE
from tests.pipeline.conftest import (
    FACADE_PLAN,
    committed,
    gaps_of,
    recording_settled,
    running,
    segments_of,
    state_is,
    wait_for,
)
from vms.core.config import Settings
from vms.core.db import utcnow
from vms.pipeline.status import RecordingState

pytestmark = pytest.mark.rtsp

# The facade case with solid fill, so that "anonymised" is measurable pixel by pixel.
FILLED_FACADE = {**FACADE_PLAN, "method": "fill"}
# How late a policy change may reach the worker: one registry poll, one tick, one frame.
PUSH_DELAY = dt.timedelta(seconds=FAST_PIPELINE.backoff_initial_s * 0 + 1.0 + 0.2 + 0.3)


def rtsp(url: str) -> dict[str, str]:
    return {"kind": "rtsp", "url": url}


def ids(rows: list[Segment]) -> list[int]:
    return [r.id for r in rows]


def test_records_masked_segments_that_match_the_index(
    rtsp_server: RtspServerProcess, iso_settings: Settings, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan=FILLED_FACADE)
    with running(iso_settings) as sup:
        wait_for(state_is(sup, camera.id, "streaming"), 15, "streaming")
        segs = wait_for(
            lambda: s if len(s := segments_of(iso_engine, camera.id)) >= 2 else None,
            15,
            "two segments",
        )
        view = sup.status(camera.id)
    assert (view.width, view.height) == (640, 360)
    # Rates over the last report interval: bursts after a scheduling hiccup are normal.
    assert view.input_fps > 10
    assert view.output_fps > 10
    assert view.recording is RecordingState.recording
    data_dir = iso_settings.data_dir
    for seg in segs:
        path = data_dir / seg.path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == seg.sha256
        assert seg.size_bytes == path.stat().st_size
        assert seg.mask_plan_hash == plan_hash(FILLED_FACADE)
        assert (seg.width, seg.height, seg.codec) == (640, 360, "h264")
        assert 0.5 <= (seg.end - seg.start).total_seconds() <= 1.6
    # Pixels: outside the kept strip the footage is black, inside it the asphalt is visible.
    anon = compile_plan(parse_plan(FILLED_FACADE), 640, 360).anon_mask > 0
    inner_anon = cv2.erode(anon.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    inner_kept = cv2.erode((~anon).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    with av.open(str(data_dir / segs[0].path)) as c:
        for n, frame in enumerate(c.decode(video=0)):
            gray = frame.to_ndarray(format="gray")
            assert gray[inner_anon].max() <= 20, f"frame {n}: anonymised area not blank"
            assert gray[inner_kept].mean() > 60, f"frame {n}: kept strip blanked too"
    with Session(iso_engine) as session:
        report = retention_service.check(
            session=session, data_dir=data_dir, repair=False, grace=dt.timedelta(0)
        )
    assert report.ok, report


def test_the_recording_profile_records_fewer_smaller_frames(
    rtsp_server: RtspServerProcess, iso_settings: Settings, iso_engine: Engine
) -> None:
    """A camera may record a fraction of its stream's frames at a smaller size (e.g. a 1080p
    main stream kept at 10 fps): masked at full size first, then left out or scaled down."""
    with committed(iso_engine) as f:
        camera = f.camera(
            source=rtsp(rtsp_server.url("/real360")),
            mask_plan=FILLED_FACADE,
            record_fps=5,
            record_height=180,
        )
    with running(iso_settings) as sup:
        segs = wait_for(
            lambda: s if len(s := segments_of(iso_engine, camera.id)) >= 3 else None,
            20,
            "three segments",
        )
        view = sup.status(camera.id)
    assert view.input_fps > 20  # the stream still arrives at 25 fps
    full = [s for s in segs[1:-1] if (s.end - s.start).total_seconds() > 0.9]
    assert full
    for seg in full:
        assert (seg.width, seg.height) == (320, 180)
        rate = seg.frames / (seg.end - seg.start).total_seconds()
        assert 4.0 <= rate <= 6.0, (seg.frames, seg.start, seg.end)
        with av.open(str(iso_settings.data_dir / seg.path)) as c:
            frame = next(c.decode(video=0))
            assert (frame.width, frame.height) == (320, 180)


def worker_gone(pid: int | None) -> bool:
    """No worker process, or only its zombie (exited, not yet reaped)."""
    if pid is None:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_basis_revoked_stops_recording_within_one_segment(
    rtsp_server: RtspServerProcess, iso_settings: Settings, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan=FACADE_PLAN)
    data_dir = iso_settings.data_dir
    with running(iso_settings) as sup:
        wait_for(lambda: len(segments_of(iso_engine, camera.id)) >= 2, 15, "two segments")
        with Session(iso_engine) as session:
            basis = session.get(LegalBasis, camera.legal_basis_id)
            assert basis is not None
            basis.status = BasisStatus.revoked
            session.commit()
        revoked = utcnow()
        view = wait_for(state_is(sup, camera.id, "blocked"), 5, "blocked")
        # The worker finalises the segment it had open, then exits: wait for the exit, since a
        # segment it still writes would pass for settled between two files.
        wait_for(lambda: worker_gone(sup.worker_pid(camera.id)), 10, "the worker exited")
        settled = recording_settled(iso_engine, camera.id, data_dir)
        wait_for(settled, 10, "the open segment closed and indexed")
        segs = segments_of(iso_engine, camera.id)
        files = sorted(p for p in data_dir.rglob("*") if p.is_file())
        time.sleep(2.5)
        assert ids(segments_of(iso_engine, camera.id)) == ids(segs)
        assert sorted(p for p in data_dir.rglob("*") if p.is_file()) == files
    assert any("revoked" in r for r in view.reasons)
    assert not view.may_record
    assert not view.may_view_live
    assert max(s.start for s in segs) < revoked + PUSH_DELAY
    assert max(s.end for s in segs) < revoked + PUSH_DELAY  # the open segment was cut short
    assert not list(data_dir.rglob("*.partial"))
    policy_gaps = [g for g in gaps_of(iso_engine, camera.id) if g.reason == "policy"]
    assert len(policy_gaps) == 1
    assert "revoked" in (policy_gaps[0].detail or "")
    assert abs((policy_gaps[0].start - max(s.end for s in segs)).total_seconds()) < 0.2


def test_a_plan_that_masks_nothing_blocks_a_camera_that_must_mask(
    rtsp_server: RtspServerProcess, iso_settings: Settings, iso_engine: Engine
) -> None:
    """A keep-everything plan written past the API (the basis required masking only later, or
    an old row) never streams or records: the running worker is stopped within a poll."""
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan=FACADE_PLAN)
        never = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan={"default": "keep"})
    with running(iso_settings) as sup:
        wait_for(lambda: len(segments_of(iso_engine, camera.id)) >= 1, 15, "a segment")
        with Session(iso_engine) as session:
            row = session.get(Camera, camera.id)
            assert row is not None
            row.mask_plan = {"version": 1, "default": "keep"}
            row.mask_plan_hash = plan_hash(row.mask_plan)
            session.commit()
        changed = utcnow()
        view = wait_for(state_is(sup, camera.id, "blocked"), 5, "blocked")
        # The worker finalises the segment it had open (masked by the old plan), then exits.
        settled = recording_settled(iso_engine, camera.id, iso_settings.data_dir)
        wait_for(settled, 10, "the open segment closed and indexed")
        segs = segments_of(iso_engine, camera.id)
        time.sleep(2.0)
        assert ids(segments_of(iso_engine, camera.id)) == ids(segs)
        assert sup.latest_frame(camera.id) is None
        blocked = sup.status(never.id)
    assert not view.may_view_live
    assert not view.may_record
    assert any("anonymises nothing" in r for r in view.reasons)
    assert all(s.mask_plan_hash == plan_hash(FACADE_PLAN) for s in segs)
    assert max(s.start for s in segs) < changed + PUSH_DELAY
    assert blocked.state.value == "blocked"
    assert blocked.pid is None
    assert segments_of(iso_engine, never.id) == []


def test_switch_to_live_only_stops_the_write_path(
    rtsp_server: RtspServerProcess, iso_settings: Settings, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan=FACADE_PLAN)
    data_dir = iso_settings.data_dir
    with running(iso_settings) as sup:
        wait_for(lambda: len(segments_of(iso_engine, camera.id)) >= 1, 15, "a segment")
        old_pid = sup.worker_pid(camera.id)
        with Session(iso_engine) as session:
            row = session.get(Camera, camera.id)
            assert row is not None
            row.mode = CameraMode.live
            session.commit()
        switched = utcnow()
        wait_for(lambda: sup.worker_pid(camera.id) not in (None, old_pid), 5, "a live-only worker")
        view = wait_for(state_is(sup, camera.id, "streaming"), 10, "streaming live-only")
        segs = segments_of(iso_engine, camera.id)
        files = sorted(p for p in data_dir.rglob("*") if p.is_file())
        time.sleep(2.0)
        assert ids(segments_of(iso_engine, camera.id)) == ids(segs)
        assert sorted(p for p in data_dir.rglob("*") if p.is_file()) == files
        view = sup.status(camera.id)
    assert view.recording is RecordingState.off
    assert view.may_view_live
    assert not view.may_record
    assert max(s.end for s in segs) < switched + PUSH_DELAY
    assert all(g.end is not None for g in gaps_of(iso_engine, camera.id))
