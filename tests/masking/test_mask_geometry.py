"""Zones against synthetic scenes of known camera geometry: pixel-exact where it matters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from masking import Masker, compile_plan, parse_plan
from masking.geometry import facade_strip_polygons, project_points

METHODS = ["blur", "pixelate", "fill"]


def check_kept_and_changed(
    before: np.ndarray, after: np.ndarray, kept: np.ndarray, border: np.ndarray, min_changed: float
) -> None:
    """Kept pixels are byte-identical; the others changed (1-pixel border excluded)."""
    diff = before != after
    if diff.ndim == 3:
        diff = diff.any(axis=2)
    inside = kept & ~border
    outside = ~kept & ~border
    assert inside.sum() > 500, "test scene keeps too little to prove anything"
    bad_kept = int(diff[inside].sum())
    assert bad_kept == 0, f"{bad_kept} kept pixels were changed"
    changed = float(diff[outside].mean())
    assert changed >= min_changed, f"only {changed:.4f} of anonymised pixels changed"


def to_yuv(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise planes in 4:2:0 layout, independent per plane (every pixel carries information)."""
    h, w = bgr.shape[:2]
    rng = np.random.default_rng(1)
    y = np.ascontiguousarray(bgr[:, :, 1])
    u = rng.integers(20, 236, size=(h // 2, w // 2), dtype=np.uint8)
    v = rng.integers(20, 236, size=(h // 2, w // 2), dtype=np.uint8)
    return y, u, v


@pytest.mark.parametrize("method", METHODS)
def test_facade_strip_bgr_keeps_exactly_the_strip(
    method: str, gothenburg_camera: Any, gothenburg_plan: Any, scenes: Any
) -> None:
    cam = gothenburg_camera
    frame = cam.render()
    kept = scenes.strip_mask(cam, 0.0, 12.0, 0.0, 2.0)
    out = Masker(gothenburg_plan(method)).apply_bgr(frame.copy())
    min_changed = 1.0 if method == "fill" else 0.97
    check_kept_and_changed(frame, out, kept, scenes.border(kept), min_changed)


@pytest.mark.parametrize("method", METHODS)
def test_facade_strip_yuv_planes(
    method: str, gothenburg_camera: Any, gothenburg_plan: Any, scenes: Any
) -> None:
    cam = gothenburg_camera
    y, u, v = to_yuv(cam.render())
    before = (y.copy(), u.copy(), v.copy())
    kept = scenes.strip_mask(cam, 0.0, 12.0, 0.0, 2.0)
    masker = Masker(gothenburg_plan(method))
    result = masker.apply_yuv420((y, u, v))
    assert result[0] is y, "numpy planes are masked in place"
    min_changed = 1.0 if method == "fill" else 0.95
    check_kept_and_changed(before[0], y, kept, scenes.border(kept), min_changed)
    # Chroma: a sample is kept where its whole 2x2 luma block is kept.
    kept_c = kept.reshape(cam.height // 2, 2, cam.width // 2, 2).all(axis=(1, 3))
    for b, a in ((before[1], u), (before[2], v)):
        check_kept_and_changed(b, a, kept_c, scenes.border(kept_c), min_changed - 0.05)
    assert masker.stats.fail_closed == 0


def test_strip_is_on_the_camera_side_and_side_can_be_forced(
    gothenburg_camera: Any, gothenburg_plan: Any, scenes: Any
) -> None:
    cam = gothenburg_camera
    plan = gothenburg_plan("fill")
    auto = compile_plan(parse_plan(plan), cam.width, cam.height).anon_mask == 0
    plan["zones"][0]["side"] = "left"
    assert np.array_equal(
        compile_plan(parse_plan(plan), cam.width, cam.height).anon_mask == 0, auto
    )
    plan["zones"][0]["side"] = "right"  # behind the wall: inside the building
    right = compile_plan(parse_plan(plan), cam.width, cam.height).anon_mask == 0
    expected = scenes.strip_mask(cam, 0.0, 12.0, -2.0, 0.0)
    border = scenes.border(expected)
    assert np.array_equal(right[~border], expected[~border])
    plan["zones"][0]["side"] = "both"
    both = compile_plan(parse_plan(plan), cam.width, cam.height).anon_mask == 0
    expected = scenes.strip_mask(cam, 0.0, 12.0, -2.0, 2.0)
    border = scenes.border(expected)
    assert np.array_equal(both[~border], expected[~border])


def test_bent_facade_covers_the_outer_corner(gothenburg_camera: Any, scenes: Any) -> None:
    """An L-shaped facade: the strip follows both wings and fills the outer corner."""
    cam = gothenburg_camera
    plan = parse_plan(
        {
            "default": "anonymise",
            "method": "fill",
            "calibration": cam.calibration([(0.0, 0.0), (12.0, 0.0), (10.0, 6.0), (2.0, 6.0)]),
            "zones": [
                {
                    "type": "facade_strip",
                    "action": "keep",
                    "facade": [[0.0, 6.0], [4.0, 6.0], [4.0, 0.0], [12.0, 0.0]],
                    "width_m": 1.5,
                    "side": "left",
                }
            ],
        }
    )
    kept = compile_plan(plan, cam.width, cam.height).anon_mask == 0
    gx, gy, hits = cam.ground_of_pixels()
    # Each wing's strip on its left (walking direction), then the wedge at the outer corner.
    d1 = np.where((gx >= 0) & (gx <= 4) & (gy >= 6) & (gy <= 7.5), gy - 6, np.inf)
    d2 = np.where((gy >= 0) & (gy <= 6) & (gx >= 4) & (gx <= 5.5), gx - 4, np.inf)
    d3 = np.where((gx >= 4) & (gx <= 12) & (gy >= 0) & (gy <= 1.5), gy, np.inf)
    corner = np.hypot(gx - 4, gy - 6) <= 1.5
    corner &= (gx >= 4) & (gy >= 6)
    expected = hits & ((np.minimum(np.minimum(d1, d2), d3) <= 1.5) | corner)
    border = scenes.border(expected, 2)  # arcs are polygons: allow 2 px on curved edges
    assert np.array_equal(kept[~border], expected[~border])


def test_polygon_only_plan_with_default_keep(scenes: Any) -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(20, 236, size=(240, 320, 3), dtype=np.uint8)
    plan = {
        "method": "pixelate",
        "zones": [
            {
                "type": "polygon",
                "action": "anonymise",
                "points": [[0.5, 0.0], [1.0, 0.0], [1.0, 0.5]],
            },
            # A later zone wins: a kept hole inside the anonymised one.
            {
                "type": "polygon",
                "action": "keep",
                "points": [[0.85, 0.05], [0.95, 0.05], [0.95, 0.15], [0.85, 0.15]],
            },
        ],
    }
    out = Masker(plan).apply_bgr(frame.copy())
    v, u = np.mgrid[0:240, 0:320]
    x, y = (u + 0.5) / 320, (v + 0.5) / 240
    anon = (x >= 0.5) & (y <= (x - 0.5))  # the triangle (0.5,0)-(1,0)-(1,0.5)
    anon &= ~((x >= 0.85) & (x <= 0.95) & (y >= 0.05) & (y <= 0.15))
    check_kept_and_changed(frame, out, ~anon, scenes.border(anon), 0.97)


def test_default_keep_without_zones_changes_nothing() -> None:
    frame = np.random.default_rng(4).integers(0, 256, size=(90, 160, 3), dtype=np.uint8)
    for plan in (None, {}, {"version": 1, "default": "keep"}):
        masker = Masker(plan)
        assert masker.plan.is_noop
        assert np.array_equal(masker.apply_bgr(frame.copy()), frame)


@pytest.mark.parametrize("method", METHODS)
def test_default_anonymise_without_zones_changes_everything(method: str) -> None:
    frame = np.random.default_rng(5).integers(20, 236, size=(90, 160, 3), dtype=np.uint8)
    out = Masker({"default": "anonymise", "method": method}).apply_bgr(frame.copy())
    changed = (out != frame).any(axis=2).mean()
    assert changed >= (1.0 if method == "fill" else 0.97)


@pytest.fixture
def wall_camera(scenes: Any) -> Any:
    """A camera on the facade itself, 4 m up, looking along it: the horizon is in view."""
    return scenes.Camera.looking(640, 360, 450.0, (0.0, 0.5, 4.0), (1.0, 0.35, -0.12))


def wall_plan(cam: Any, facade: list[list[float]], action: str, default: str) -> dict[str, Any]:
    return {
        "method": "fill",
        "default": default,
        "calibration": cam.calibration(
            [(8.0, 1.0), (30.0, 2.0), (25.0, 9.0), (10.0, 5.0), (16.0, 3.0)]
        ),
        "zones": [{"type": "facade_strip", "action": action, "facade": facade, "width_m": 2.0}],
    }


def test_strip_crossing_the_horizon_behind_the_camera(wall_camera: Any, scenes: Any) -> None:
    cam = wall_camera
    facade = [[-40.0, 0.0], [80.0, 0.0]]
    # The strip really does pass behind the camera: some of its corners have depth w < 0.
    _, w = project_points(
        cam.homography_px(), facade_strip_polygons(np.array(facade), 2.0, "left")[0]
    )
    assert (w < 0).any()
    assert (w > 0).any()
    frame = cam.render()
    kept = scenes.strip_mask(cam, -40.0, 80.0, 0.0, 2.0)
    gx, _gy, hits = cam.ground_of_pixels()
    assert (~hits).mean() > 0.2, "the sky should be in view"
    out = Masker(wall_plan(cam, facade, "keep", "anonymise")).apply_bgr(frame.copy())
    # Near the horizon the strip is thinner than a pixel: judge the rest (2 px tolerance there).
    far = np.zeros_like(kept)
    far[np.abs(gx - cam.centre[0]) > 60] = True
    check_kept_and_changed(frame, out, kept & ~far, scenes.border(kept, 2) | far, 1.0)
    # Above the horizon (sky) is all anonymised: a naive projection would paint the part of the
    # strip behind the camera up there.
    assert (out[~hits] != frame[~hits]).any(axis=1).all()


def test_strip_wholly_behind_the_camera_is_invisible(wall_camera: Any) -> None:
    cam = wall_camera
    frame = cam.render()
    plan = wall_plan(cam, [[-40.0, 0.0], [-5.0, 0.0]], "anonymise", "keep")
    compiled = compile_plan(parse_plan(plan), cam.width, cam.height)
    assert not compiled.anon_mask.any()
    assert np.array_equal(Masker(plan).apply_bgr(frame.copy()), frame)


def test_compiled_masks_are_cached_per_size(gothenburg_plan: Any) -> None:
    plan = parse_plan(gothenburg_plan("blur"))
    a = compile_plan(plan, 640, 360)
    assert compile_plan(parse_plan(gothenburg_plan("blur")), 640, 360) is a
    b = compile_plan(plan, 1280, 720)
    assert b is not a
    assert b.anon_mask.shape == (720, 1280)
    assert not a.anon_mask.flags.writeable
