"""The frame check on synthetic 4:2:0 planes: what passes, what fails, what it costs (pure)."""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np
import pytest

from masking.incamera import (
    DEFAULT_MASK_COLOR,
    CheckParams,
    MaskCheck,
    MaskLimits,
    camera_masks,
)
from masking.plan import MaskPlan
from tests.incamera.conftest import facade_plan, polygon_plan

pytestmark = pytest.mark.nodb

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def _scene(w: int, h: int, seed: int = 3) -> Planes:
    """A textured picture (blurred noise, like footage after compression)."""
    rng = np.random.default_rng(seed)
    y = cv2.GaussianBlur(rng.integers(30, 220, (h, w), dtype=np.uint8), (5, 5), 0)
    u = cv2.GaussianBlur(rng.integers(100, 156, (h // 2, w // 2), dtype=np.uint8), (3, 3), 0)
    v = cv2.GaussianBlur(rng.integers(100, 156, (h // 2, w // 2), dtype=np.uint8), (3, 3), 0)
    return y, u, v


def _paint(planes: Planes, covered: np.ndarray, color: tuple[int, int, int]) -> Planes:
    y, u, v = (p.copy() for p in planes)
    y[covered] = color[0]
    half = covered[::2, ::2]
    u[half] = color[1]
    v[half] = color[2]
    return y, u, v


def _camera_frame(plan: MaskPlan, w: int, h: int) -> tuple[MaskCheck, Planes, np.ndarray]:
    masks = camera_masks(plan, w, h, MaskLimits(4, 16))
    covered = masks.covered()
    check = MaskCheck.build(plan, w, h, covered=covered)
    return check, _paint(_scene(w, h), covered, DEFAULT_MASK_COLOR.stream_yuv()), covered


COLOR = DEFAULT_MASK_COLOR.stream_yuv()


@pytest.mark.parametrize("plan", [facade_plan(), polygon_plan()], ids=["facade", "polygons"])
def test_a_properly_masked_frame_passes(plan: MaskPlan) -> None:
    check, frame, _ = _camera_frame(plan, 640, 360)
    result = check.verify(frame, COLOR)
    assert result.ok, result.describe()
    assert result.masked_fraction > 0.99
    assert result.kept_painted_fraction == 0.0
    assert result.kept_textured_fraction > 0.9


def test_an_unmasked_frame_fails() -> None:
    check, _, _ = _camera_frame(facade_plan(), 640, 360)
    result = check.verify(_scene(640, 360), COLOR)
    assert not result.ok
    assert result.reason == "unmasked"
    assert result.masked_fraction < 0.05
    assert result.unmasked_cells == result.anon_cells


def test_a_small_hole_in_a_mask_fails_and_is_located() -> None:
    check, (y, u, v), _ = _camera_frame(facade_plan(), 1280, 720)
    original = _scene(1280, 720)
    # A 16x16 px patch of picture shows through near the top (a face at 720p is ~20-40 px).
    y[200:216, 600:616] = original[0][200:216, 600:616]
    result = check.verify((y, u, v), COLOR)
    assert result.reason == "unmasked", result.describe()
    assert result.masked_fraction > 0.999  # the frame as a whole looks fine: cells catch it
    assert result.worst_cell is not None
    x0, y0, x1, y1 = result.worst_cell
    assert x0 <= 608 < x1
    assert y0 <= 208 < y1


def test_the_wrong_colour_fails() -> None:
    check, _, covered = _camera_frame(facade_plan(), 640, 360)
    black = _paint(_scene(640, 360), covered, (16, 128, 128))
    assert check.verify(black, COLOR).reason == "unmasked"


def test_masking_the_kept_area_too_fails() -> None:
    check, _, _ = _camera_frame(facade_plan(), 640, 360)
    everything = _paint(_scene(640, 360), np.ones((360, 640), bool), COLOR)
    result = check.verify(everything, COLOR)
    assert result.reason == "kept_masked", result.describe()
    assert result.kept_painted_fraction == 1.0


def test_a_blank_kept_area_fails() -> None:
    check, (y, u, v), covered = _camera_frame(facade_plan(), 640, 360)
    y[~covered] = 80
    result = check.verify((y, u, v), COLOR)
    assert result.reason == "kept_flat", result.describe()
    assert result.kept_textured_fraction == 0.0


def test_compression_noise_within_tolerance_passes() -> None:
    check, (y, u, v), covered = _camera_frame(facade_plan(), 640, 360)
    rng = np.random.default_rng(5)
    noise = rng.integers(-8, 9, y.shape)
    y = np.where(covered, np.clip(y.astype(int) + noise, 0, 255), y).astype(np.uint8)
    assert check.verify((y, u, v), COLOR).ok


def test_thresholds_are_parameters() -> None:
    plan = facade_plan()
    _, frame, covered = _camera_frame(plan, 640, 360)
    strict = MaskCheck.build(plan, 640, 360, covered=covered, params=CheckParams(tolerance_y=0))
    y, u, v = frame
    y = np.where(covered, y + 1, y).astype(np.uint8)  # one step off everywhere
    assert strict.verify((y, u, v), COLOR).reason == "unmasked"
    assert MaskCheck.build(plan, 640, 360, covered=covered).verify((y, u, v), COLOR).ok


def test_frame_size_must_match() -> None:
    check, _, _ = _camera_frame(facade_plan(), 640, 360)
    with pytest.raises(ValueError, match="640x360"):
        check.verify(_scene(1280, 720), COLOR)


def test_check_cost_at_1080p() -> None:
    """A few milliseconds per 1080p frame (the figure the docs quote, measured here)."""
    check, frame, _ = _camera_frame(facade_plan(), 1920, 1080)
    times = []
    for _ in range(15):
        start = time.perf_counter()
        result = check.verify(frame, COLOR)
        times.append(time.perf_counter() - start)
    assert result.ok
    median_ms = statistics.median(times) * 1000
    print(f"frame check at 1080p: median {median_ms:.2f} ms")
    # ~2 ms here; a generous bound for a busy shared machine.
    assert median_ms < 25
