"""Pixel operations and the frame paths: fail closed, in place, and safe on decoder frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from masking import Detection, Masker, MaskPlan, PolygonZone
from masking.anonymise import blur, pixelate
from masking.plan import FacadeStripZone

TOP_HALF = {
    "method": "pixelate",
    "zones": [
        {"type": "polygon", "action": "anonymise", "points": [[0, 0], [1, 0], [1, 0.5], [0, 0.5]]}
    ],
}


def noise(h: int, w: int, c: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(20, 236, size=shape, dtype=np.uint8)


@pytest.mark.parametrize(
    ("h", "w", "block"), [(64, 96, 8), (67, 101, 8), (1080 // 4, 1920 // 4, 16), (5, 7, 8)]
)
def test_pixelate_blocks_are_block_means(h: int, w: int, block: int) -> None:
    img = noise(h, w)
    out = img.copy()
    pixelate(out, block)
    for by in range(0, h, block):
        for bx in range(0, w, block):
            tile = out[by : by + block, bx : bx + block]
            assert (tile == tile[0, 0]).all(), f"block at {bx},{by} is not flat"
            mean = img[by : by + block, bx : bx + block].mean()
            assert abs(int(tile[0, 0]) - mean) <= 1.0


def test_pixelate_works_through_a_strided_view_in_place() -> None:
    """PyAV planes have line padding: a view with a row stride must be written in place."""
    buf = noise(120, 192)
    view = buf[:, :160]
    pad_before = buf[:, 160:].copy()
    pixelate(view[8:72, 16:112], 8)
    assert np.shares_memory(view, buf)
    assert (buf[8:16, 16:24] == buf[8, 16]).all()
    assert np.array_equal(buf[:, 160:], pad_before)


def test_blur_removes_detail_in_bgr_and_planes() -> None:
    for img in (noise(180, 320, 3), noise(180, 320)):
        out = img.copy()
        blur(out, 16)
        # Neighbouring pixels of noise differ by ~70; after the blur by almost nothing.
        assert np.abs(np.diff(img.astype(int), axis=1)).mean() > 50
        assert np.abs(np.diff(out.astype(int), axis=1)).mean() < 3
        assert abs(float(out.mean()) - float(img.mean())) < 3


class Raising:
    def detect(self, image: np.ndarray) -> list[Detection]:
        raise RuntimeError("model crashed")


def test_detector_failure_blanks_the_bgr_frame() -> None:
    masker = Masker(TOP_HALF, detectors=[Raising()])
    frame = noise(90, 160, 3)
    out = masker.apply_bgr(frame.copy())
    assert not out.any()
    assert masker.stats.fail_closed == 1
    assert masker.stats.detector_failures == 1
    assert masker.stats.last_error == "RuntimeError: model crashed"
    masker.apply_bgr(frame.copy())
    assert masker.stats.fail_closed == 2


def test_detector_failure_blanks_yuv_planes_and_video_frames() -> None:
    masker = Masker(None, detectors=[Raising()])
    y, u, v = noise(90, 160), noise(45, 80), noise(45, 80)
    masker.apply_yuv420((y, u, v))
    assert (y == 16).all()
    assert (u == 128).all()
    assert (v == 128).all()
    frame = av.VideoFrame.from_ndarray(noise(90, 160, 3), format="bgr24").reformat(format="yuv420p")
    out = masker.apply_yuv420(frame)
    gray = out.to_ndarray(format="gray")
    assert gray.max() <= 1  # limited-range black
    assert masker.stats.fail_closed == 2


def broken_plan() -> MaskPlan:
    """A plan that got past validation (e.g. stored by an older version) and cannot compile."""
    strip = FacadeStripZone.model_construct(
        type="facade_strip",
        action="keep",
        facade=[(0.0, 0.0), (5.0, 0.0)],
        width_m=2.0,
        side="auto",
    )
    return MaskPlan.model_construct(
        version=1,
        method="blur",
        strength=None,
        default="anonymise",
        calibration=None,
        zones=[strip],
        detect=None,
    )


def test_plan_that_fails_to_compile_blanks_every_frame() -> None:
    masker = Masker(broken_plan())
    frame = noise(90, 160, 3)
    for _ in range(3):
        assert not masker.apply_bgr(frame.copy()).any()
    y, u, v = noise(90, 160), noise(45, 80), noise(45, 80)
    masker.apply_yuv420((y, u, v))
    assert (y == 16).all()
    assert (u == 128).all()
    assert masker.stats.fail_closed == 4
    # Compiled (and failed) once per frame size, not per frame.
    assert masker.stats.compile_failures == 1
    assert "facade_strip needs calibration" in (masker.stats.last_error or "")


def test_bad_frames_are_blanked_not_passed() -> None:
    masker = Masker(TOP_HALF)
    rgba = noise(40, 60, 4)
    assert not masker.apply_bgr(rgba).any()
    y, u, v = noise(40, 60), noise(40, 60), noise(20, 30)  # U is not 4:2:0
    masker.apply_yuv420((y, u, v))
    assert (y == 16).all()
    assert masker.stats.fail_closed == 2


def test_video_frame_in_other_pixel_format_is_converted_and_masked() -> None:
    frame = av.VideoFrame.from_ndarray(noise(90, 160, 3), format="bgr24").reformat(format="yuv444p")
    out = Masker({"default": "anonymise", "method": "fill"}).apply_yuv420(frame)
    assert out.format.name == "yuv420p"
    assert out.to_ndarray(format="gray").max() <= 1


def test_full_range_frames_are_filled_with_full_range_black() -> None:
    frame = av.VideoFrame.from_ndarray(noise(90, 160, 3), format="bgr24").reformat(
        format="yuvj420p"
    )
    out = Masker({"default": "anonymise", "method": "fill"}).apply_yuv420(frame)
    assert out.format.name == "yuvj420p"
    y = np.frombuffer(memoryview(out.planes[0]), np.uint8)
    assert (y == 0).all()


def test_masking_decoded_frames_does_not_corrupt_later_frames(sample_media: Path) -> None:
    """The decoder shares frame buffers with its reference pictures; masking in place without
    copying them first smears the mask into the frames decoded after."""
    video = sample_media / "video" / "one-by-one-person-detection.mp4"

    def luma_rows(mask: bool) -> list[np.ndarray]:
        masker = Masker({**TOP_HALF, "method": "fill"})
        rows = []
        with av.open(str(video)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == 100:  # someone walks in around frame 65: motion reaches across
                    break
                out = masker.apply_yuv420(frame) if mask else frame
                rows.append(out.to_ndarray(format="gray")[240:].copy())
        return rows

    plain, masked = luma_rows(False), luma_rows(True)
    for i, (a, b) in enumerate(zip(plain, masked, strict=True)):
        assert np.array_equal(a, b), f"frame {i}: kept half differs from a clean decode"


def test_yuv_and_bgr_paths_agree_on_the_luma(gothenburg_plan: Any, gothenburg_camera: Any) -> None:
    frame = gothenburg_camera.render()
    vf = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p")
    y_in = vf.to_ndarray(format="gray")
    out = Masker(gothenburg_plan("fill")).apply_yuv420(vf).to_ndarray(format="gray")
    kept = out == y_in
    bgr_out = Masker(gothenburg_plan("fill")).apply_bgr(frame.copy())
    kept_bgr = (bgr_out == frame).all(axis=2)
    assert (kept != kept_bgr).mean() < 0.002


def test_polygon_zone_model_is_public() -> None:
    zone = PolygonZone(type="polygon", action="keep", points=[(0, 0), (1, 0), (1, 1)])
    assert zone.points[1] == (1.0, 0.0)
