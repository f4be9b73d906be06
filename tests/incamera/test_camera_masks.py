"""End to end with real peers: plan -> Media2 masks on the test device -> the test camera draws
them into its H.264 -> PyAV decodes the RTSP stream -> the frame check.

Nothing here is mocked: the camera is a GStreamer RTSP server encoding with x264, the device a
SOAP service driven by the same WSDL as the client, the frames decoded by PyAV.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from masking.incamera import CameraMasks, MaskCheck, MaskColor, camera_masks
from masking.plan import MaskPlan
from tests.incamera.conftest import KeyframeChecker, facade_plan, frame_after, polygon_plan
from tests.peers.onvif_device import ONVIF_PASSWORD, ONVIF_USER, MaskingRig
from vms.pipeline import media2

pytestmark = [pytest.mark.nodb, pytest.mark.rtsp]


def push_plan(rig: MaskingRig, plan: MaskPlan) -> tuple[CameraMasks, MaskCheck, MaskColor]:
    """What the supervisor will do before passthrough: options, polygons, apply, check."""
    creds = (rig.device.host, rig.device.port, ONVIF_USER, ONVIF_PASSWORD)
    options = asyncio.run(media2.mask_options(*creds))
    w, h = rig.size
    masks = camera_masks(plan, w, h, options.limits)
    applied = asyncio.run(media2.apply_masks(*creds, masks.polygons))
    check = MaskCheck.build(plan, w, h, covered=masks.covered())
    return masks, check, applied.color


@pytest.mark.parametrize("plan", [facade_plan(), polygon_plan()], ids=["facade", "polygons"])
def test_masks_drawn_by_the_camera_pass_and_forgotten_ones_fail(
    masking_rig: MaskingRig, plan: MaskPlan
) -> None:
    _, check, color = push_plan(masking_rig, plan)
    result = check.verify_frame(frame_after(masking_rig.url(), 0.3), color)
    print(f"masked camera frame: {result.describe()}")
    assert result.ok, result.describe()
    assert result.masked_fraction > 0.99
    assert result.worst_fraction > 0.98  # well clear of the 0.95 threshold after H.264

    masking_rig.forget_masks()  # firmware reset
    creds = (masking_rig.device.host, masking_rig.device.port, ONVIF_USER, ONVIF_PASSWORD)
    assert asyncio.run(media2.read_masks(*creds)) == ()
    result = check.verify_frame(frame_after(masking_rig.url(), 0.3), color)
    assert result.reason == "unmasked", result.describe()
    assert result.masked_fraction < 0.1


def test_720p_bt709_camera(masking_rig_factory: Callable[..., MaskingRig]) -> None:
    rig = masking_rig_factory(size=(1280, 720))
    _, check, color = push_plan(rig, facade_plan())
    frame = frame_after(rig.url(), 0.3)
    assert int(frame.colorspace) == 1  # BT.709 signalled: the expected colour follows it
    result = check.verify_frame(frame, color)
    assert result.ok, result.describe()
    rig.forget_masks()
    assert check.verify_frame(frame_after(rig.url(), 0.3), color).reason == "unmasked"


def test_a_camera_that_paints_the_kept_area_fails(masking_rig: MaskingRig) -> None:
    _, check, color = push_plan(masking_rig, facade_plan())
    # Someone adds a mask over the whole picture on the camera's own web page.
    masking_rig.set_masks([((-1.0, 1.0), (1.0, 1.0), (1.0, -1.0), (-1.0, -1.0))])
    result = check.verify_frame(frame_after(masking_rig.url(), 0.3), color)
    assert result.reason == "kept_masked", result.describe()
    assert result.kept_painted_fraction > 0.9


def test_a_camera_that_lists_masks_it_does_not_draw_fails(masking_rig: MaskingRig) -> None:
    _, check, color = push_plan(masking_rig, facade_plan())
    masking_rig.forget_masks(keep_reporting=True)
    creds = (masking_rig.device.host, masking_rig.device.port, ONVIF_USER, ONVIF_PASSWORD)
    assert len(asyncio.run(media2.read_masks(*creds))) == 2  # GetMasks still says all is well
    result = check.verify_frame(frame_after(masking_rig.url(), 0.3), color)
    assert result.reason == "unmasked", result.describe()


def test_mask_colour_mismatch_fails(masking_rig: MaskingRig) -> None:
    masks, check, _ = push_plan(masking_rig, facade_plan())
    # The camera draws in another colour than vms asked for (e.g. a firmware that ignores it).
    masking_rig.set_masks(masks.polygons, color=(16.0, 128.0, 128.0))
    result = check.verify_frame(frame_after(masking_rig.url(), 0.3), MaskColor(100, 200, 200))
    assert not result.ok


@pytest.mark.slow
def test_a_firmware_reset_is_caught_within_one_check_interval(masking_rig: MaskingRig) -> None:
    """One keyframe checked per second (keyframes every second): a reset shows in the next one."""
    _, check, color = push_plan(masking_rig, facade_plan())
    interval = 1.0
    keyframe_period = 1.0  # keyint 25 at 25 fps
    checker = KeyframeChecker(masking_rig.url(), check, color, interval=interval).start()
    try:
        deadline = time.monotonic() + 10
        while sum(r.ok for _, r in checker.results) < 2:
            assert time.monotonic() < deadline, f"no passing checks: {checker.results}"
            assert checker.error is None, checker.error
            time.sleep(0.05)
        assert all(r.ok for _, r in checker.results), checker.results
        reset_at = time.monotonic()
        masking_rig.forget_masks()
        failed_at, result = checker.first_failure_after(reset_at, timeout=5)
    finally:
        checker.stop()
    delay = failed_at - reset_at
    print(f"firmware reset caught after {delay:.2f}s ({result.describe()})")
    assert result.reason == "unmasked"
    # The next check after the reset fails: at most one interval plus the wait for a keyframe.
    assert delay <= interval + keyframe_period + 0.5


@pytest.mark.slow
@pytest.mark.parametrize("size", [(640, 360), (1280, 720)], ids=["360p", "720p"])
def test_camera_cpu(masking_rig_factory: Callable[..., MaskingRig], size: tuple[int, int]) -> None:
    """The test camera's own cost while one viewer watches (decode + draw + x264)."""
    rig = masking_rig_factory(size=size)
    push_plan(rig, facade_plan())
    with_viewer_start = rig.camera.stats()
    frame_after(rig.url(), 3.0)
    end = rig.camera.stats()
    cpu = end["cpu_s"] - with_viewer_start["cpu_s"]
    wall = end["wall_s"] - with_viewer_start["wall_s"]
    frames = end["frames"] - with_viewer_start["frames"]
    w, h = size
    print(f"masking camera {w}x{h}: {cpu / wall:.0%} of a core, {frames / wall:.1f} fps")
    assert 20 <= frames / wall <= 30  # paced at 25 fps
    assert cpu / wall < 0.8
