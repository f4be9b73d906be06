"""Compile a plan for one frame size: masks, boxes and strengths, computed once and cached.

Applying a compiled plan per frame does no geometry: it only reads the boxes and masks here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np

from masking.geometry import facade_strip_polygons, project_ground_polygon, rasterise, w_min
from masking.plan import (
    FacadeStripZone,
    MaskPlan,
    PolygonZone,
    calibration_homography,
    plan_hash,
    resolve_side,
)

__all__ = ["Box", "CompiledPlan", "PlaneRegion", "chroma_mask", "compile_plan", "zone_masks"]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in pixels

# Compiled plans by (plan hash, width, height): cameras sharing a plan and size share the masks.
# Plans are pydantic models with list fields, so they are keyed by content hash, not hashed.
_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, int, int], CompiledPlan] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class PlaneRegion:
    """Work for one plane: anonymise `box`, then put back the kept pixels under `keep_mask`.

    `keep_box`/`keep_mask` are None when nothing inside `box` is kept.
    """

    box: Box
    keep_box: Box | None
    keep_mask: np.ndarray | None  # uint8 0/255 of keep_box's size


@dataclass(frozen=True)
class CompiledPlan:
    plan: MaskPlan
    width: int
    height: int
    # 255 where the static zones anonymise, 0 where they keep; full resolution.
    anon_mask: np.ndarray
    # Per-plane work lists: luma (full size) and chroma (half size, for 4:2:0).
    luma: tuple[PlaneRegion, ...]
    chroma: tuple[PlaneRegion, ...]
    # Block size / blur radius in pixels of this frame size (0 for fill).
    strength_px: int
    # Bounding box of the kept area (None if nothing is kept), for detector crops.
    kept_box: Box | None
    # Homography ground (metres) -> pixel centres, if the plan is calibrated.
    homography_px: np.ndarray | None = None
    anon_fraction: float = field(default=0.0)
    # For anonymising whole planes (`anonymise_plane_into`): the kept pixels of each plane as
    # (bounding box, 0/255 mask of its size), None where nothing is kept; and the share of the
    # frame the luma regions' boxes cover (the work `apply_regions` would do).
    luma_keep: tuple[Box, np.ndarray] | None = None
    chroma_keep: tuple[Box, np.ndarray] | None = None
    region_fraction: float = 0.0

    @property
    def everything(self) -> bool:
        """True when the static zones anonymise the whole frame."""
        return self.kept_box is None

    @property
    def nothing(self) -> bool:
        return not self.luma


def _fill(mask: np.ndarray, polys: list[np.ndarray], value: int) -> None:
    mask[rasterise(polys, mask.shape[1], mask.shape[0])] = value


def _homography(plan: MaskPlan) -> np.ndarray | None:
    """Ground (metres) -> normalised image homography (w > 0 visible), or None if uncalibrated."""
    if plan.calibration is None:
        return None
    return calibration_homography(plan.calibration)


def zone_masks(plan: MaskPlan, width: int, height: int) -> np.ndarray:
    """The static anonymise mask (uint8, 255 = anonymise) of a plan at a frame size."""
    mask = np.full((height, width), 255 if plan.default == "anonymise" else 0, dtype=np.uint8)
    h = _homography(plan)
    wmin = 0.0
    if h is not None and plan.calibration is not None:
        wmin = w_min(h, np.array([c.ground for c in plan.calibration], dtype=np.float64))
    for zone in plan.zones:
        value = 255 if zone.action == "anonymise" else 0
        if isinstance(zone, PolygonZone):
            poly = np.array(zone.points, dtype=np.float64)
            poly[:, 0] = poly[:, 0] * width - 0.5
            poly[:, 1] = poly[:, 1] * height - 0.5
            _fill(mask, [poly], value)
        elif isinstance(zone, FacadeStripZone):
            if h is None or plan.calibration is None:
                raise ValueError("facade_strip needs calibration")  # validated already
            side = resolve_side(zone, plan.calibration)
            ground = facade_strip_polygons(np.array(zone.facade), zone.width_m, side)
            _fill(mask, [project_ground_polygon(h, g, wmin, width, height) for g in ground], value)
    return mask


def _bbox(mask: np.ndarray) -> Box | None:
    ys = np.flatnonzero(mask.any(axis=1))
    if len(ys) == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _align(box: Box, step: int, width: int, height: int) -> Box:
    """Grow a box outward to multiples of `step` (clamped to the frame)."""
    x0, y0, x1, y1 = box
    return (
        x0 - x0 % step,
        y0 - y0 % step,
        min(width, -(-x1 // step) * step),
        min(height, -(-y1 // step) * step),
    )


def _merge_boxes(boxes: list[Box]) -> list[Box]:
    """Merge overlapping boxes until none overlap (so no pixel is anonymised twice)."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for b in merged:
            for i, o in enumerate(out):
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    out[i] = (min(b[0], o[0]), min(b[1], o[1]), max(b[2], o[2]), max(b[3], o[3]))
                    changed = True
                    break
            else:
                out.append(b)
        merged = out
    return merged


def _regions(anon: np.ndarray, step: int) -> tuple[PlaneRegion, ...]:
    """Work regions for one plane: a box per connected anonymised area, plus its kept pixels."""
    height, width = anon.shape
    if not anon.any():
        return ()
    n, _, stats, _ = cv2.connectedComponentsWithStats(anon, connectivity=8)
    boxes = [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, _area in stats[1:n].tolist()]
    # Aligning to the block grid keeps pixelation blocks whole and identical wherever they are.
    boxes = _merge_boxes([_align(b, step, width, height) for b in boxes])
    regions: list[PlaneRegion] = []
    for box in sorted(boxes, key=lambda b: (b[1], b[0])):
        x0, y0, x1, y1 = box
        keep = cv2.bitwise_not(anon[y0:y1, x0:x1])
        kb = _bbox(keep)
        if kb is None:
            regions.append(PlaneRegion(box, None, None))
            continue
        kx0, ky0, kx1, ky1 = kb
        keep_box = (x0 + kx0, y0 + ky0, x0 + kx1, y0 + ky1)
        regions.append(PlaneRegion(box, keep_box, np.ascontiguousarray(keep[ky0:ky1, kx0:kx1])))
    return tuple(regions)


def chroma_mask(anon: np.ndarray) -> np.ndarray:
    """4:2:0 chroma mask: a chroma sample is kept only if all four of its luma pixels are."""
    h, w = anon.shape
    hh, hw = (h + 1) // 2, (w + 1) // 2
    padded = anon
    if h % 2 or w % 2:
        padded = cv2.copyMakeBorder(anon, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    # Max over each 2x2 block: anonymised if any of its luma pixels is.
    blocks = padded.reshape(hh, 2, hw, 2)
    return np.ascontiguousarray(blocks.max(axis=(1, 3)))


def _keep(kept: np.ndarray) -> tuple[Box, np.ndarray] | None:
    box = _bbox(kept)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    mask = np.ascontiguousarray(kept[y0:y1, x0:x1])
    mask.setflags(write=False)
    return box, mask


def scaled_strength(plan: MaskPlan, height: int) -> int:
    """The plan's strength (pixels at 1080 lines) at this frame height; even, at least 2."""
    base = plan.effective_strength()
    if base == 0:
        return 0
    px = round(base * height / 1080)
    return max(2, px + px % 2)


def _compile(plan: MaskPlan, width: int, height: int) -> CompiledPlan:
    anon = zone_masks(plan, width, height)
    strength = scaled_strength(plan, height)
    step = max(2, strength) if plan.method == "pixelate" else 2
    chroma = chroma_mask(anon)
    kept = cv2.bitwise_not(anon)
    h = _homography(plan)
    h_px = None
    if h is not None:
        to_px = np.array([[width, 0, -0.5], [0, height, -0.5], [0, 0, 1]], dtype=np.float64)
        h_px = to_px @ h
    anon.setflags(write=False)
    luma = _regions(anon, step)
    covered = sum((b[2] - b[0]) * (b[3] - b[1]) for b in (r.box for r in luma))
    return CompiledPlan(
        plan=plan,
        width=width,
        height=height,
        anon_mask=anon,
        luma=luma,
        chroma=_regions(chroma, step // 2),
        strength_px=strength,
        kept_box=_bbox(kept),
        homography_px=h_px,
        anon_fraction=float(np.count_nonzero(anon)) / anon.size,
        luma_keep=_keep(kept),
        chroma_keep=_keep(cv2.bitwise_not(chroma)),
        region_fraction=covered / anon.size,
    )


def compile_plan(plan: MaskPlan, width: int, height: int) -> CompiledPlan:
    """Masks and work boxes for a plan at a frame size (cached per plan and size)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    key = (plan_hash(plan), width, height)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    compiled = _compile(plan, width, height)
    with _cache_lock:
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled
