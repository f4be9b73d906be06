"""The running pipeline against the real RTSP server: masked segments on disk that match the
index, and the camera's policy enforced at run time."""

from __future__ import annotations

import datetime as dt
import hashlib
import time

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
from tests.pipeline.conftest import (
    FACADE_PLAN,
    FAST_PIPELINE,
    committed,
    gaps_of,
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
    rtsp_server: RtspServerProcess, pipeline_settings: Settings, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan=FILLED_FACADE)
    with running(pipeline_settings) as sup:
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
    data_dir = pipeline_settings.data_dir
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


def test_basis_revoked_stops_recording_within_one_segment(
    rtsp_server: RtspServerProcess, pipeline_settings: Settings, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan=FACADE_PLAN)
    data_dir = pipeline_settings.data_dir
    with running(pipeline_settings) as sup:
        wait_for(lambda: len(segments_of(iso_engine, camera.id)) >= 2, 15, "two segments")
        with Session(iso_engine) as session:
            basis = session.get(LegalBasis, camera.legal_basis_id)
            assert basis is not None
            basis.status = BasisStatus.revoked
            session.commit()
        revoked = utcnow()
        view = wait_for(state_is(sup, camera.id, "blocked"), 5, "blocked")
        # The worker finalises the segment it had open, then exits.
        wait_for(lambda: not list(data_dir.rglob("*.partial")), 5, "the open segment closed")
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


def test_switch_to_live_only_stops_the_write_path(
    rtsp_server: RtspServerProcess, pipeline_settings: Settings, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        camera = f.camera(source=rtsp(rtsp_server.url("/real360")), mask_plan=FACADE_PLAN)
    data_dir = pipeline_settings.data_dir
    with running(pipeline_settings) as sup:
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
