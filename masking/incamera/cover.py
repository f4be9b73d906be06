"""Plans a camera can draw: the few simple polygons, within the camera's limits, whose union
covers every pixel a static plan anonymises (see `camera_masks`)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from masking.compile import zone_masks
from masking.geometry import clip_polygon_rect
from masking.incamera.coords import (
    Box,
    InCameraError,
    LimitsExceeded,
    NotStatic,
    OnvifPolygon,
    default_margin_px,
    disc,
    pixels_to_onvif,
    rasterise_onvif,
)
from masking.plan import MaskPlan

# -- plans a camera can draw ------------------------------------------------------------------


def is_static(plan: MaskPlan) -> bool:
    """True when the plan is polygons and facade strips only: no detectors, nothing that moves."""
    return plan.detect is None


@dataclass(frozen=True, slots=True)
class MaskLimits:
    """What a camera accepts (Media2 GetMaskOptions)."""

    max_masks: int
    max_points: int
    rectangle_only: bool = False

    def __post_init__(self) -> None:
        if self.max_masks < 0:
            raise ValueError("max_masks must not be negative")
        if self.max_points < (4 if self.rectangle_only else 3):
            raise ValueError(f"max_points {self.max_points} cannot describe a polygon")


@dataclass(frozen=True, slots=True)
class CameraMasks:
    """The polygons to push to a camera, with what they cover at the size they were made for."""

    polygons: tuple[OnvifPolygon, ...]
    width: int
    height: int
    margin_px: int
    # Anonymised by the plan, as a fraction of the frame.
    anon_fraction: float
    # Kept by the plan but covered by the masks: of the frame, and of the kept area.
    over_fraction: float
    over_of_kept: float
    # Kept pixels covered, in pixels at this size (what the margin and simplification cost).
    over_px: int

    def covered(self, width: int | None = None, height: int | None = None) -> Any:
        """Boolean mask of what the polygons cover (at this or another frame size)."""
        return rasterise_onvif(self.polygons, width or self.width, height or self.height)


def camera_masks(
    plan: MaskPlan,
    width: int,
    height: int,
    limits: MaskLimits,
    *,
    margin_px: int | None = None,
    max_over_of_kept: float | None = 0.25,
) -> CameraMasks:
    """Simple polygons, within `limits`, whose union covers every pixel the plan anonymises.

    The anonymised area is grown by `margin_px` (so a camera that rounds its mask coordinates
    never exposes an edge) and decomposed: regions with holes (the facade case, "everything but
    a strip") are cut through each hole until every piece is simple; each piece's outline is then
    simplified only outward (removing a vertex where that adds area, extending two edges to meet
    where that adds area), so a mask never covers less than the plan. Raises NotStatic for
    detector plans, LimitsExceeded when the camera's limits cannot hold the shape, or when the
    cover would hide more than `max_over_of_kept` of the kept area (None: no bound).
    """
    if not is_static(plan):
        raise NotStatic("the plan uses detectors; only the transcode path can apply it")
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    margin = default_margin_px(height) if margin_px is None else margin_px
    if margin < 1:
        raise ValueError("margin_px must be at least 1")
    anon = zone_masks(plan, width, height) > 0
    anon_px = int(np.count_nonzero(anon))
    kept_px = anon.size - anon_px
    if anon_px == 0:
        return CameraMasks((), width, height, margin, 0.0, 0.0, 0.0, 0)
    if limits.max_masks == 0:
        raise LimitsExceeded("the camera accepts no masks")
    target = cv2.dilate(anon.astype(np.uint8), disc(margin))
    polygons = _cover(target, width, height, limits, margin)
    result_polys = tuple(pixels_to_onvif(p, width, height) for p in polygons)
    covered = rasterise_onvif(result_polys, width, height)
    missed = int(np.count_nonzero(anon & ~covered))
    if missed:
        # The construction only ever grows shapes; this is a bug, never a plan to pass on.
        raise InCameraError(f"internal error: the masks miss {missed} anonymised pixels")
    over_px = int(np.count_nonzero(covered & ~anon))
    result = CameraMasks(
        polygons=result_polys,
        width=width,
        height=height,
        margin_px=margin,
        anon_fraction=anon_px / anon.size,
        over_fraction=over_px / anon.size,
        over_of_kept=over_px / kept_px if kept_px else 0.0,
        over_px=over_px,
    )
    if max_over_of_kept is not None and result.over_of_kept > max_over_of_kept:
        raise LimitsExceeded(
            f"within the camera's limits ({limits.max_masks} masks of {limits.max_points} "
            f"points) the masks would hide {result.over_of_kept:.1%} of the kept area "
            f"(allowed {max_over_of_kept:.1%})"
        )
    return result


def _cover(
    target: np.ndarray, width: int, height: int, limits: MaskLimits, margin: int
) -> list[np.ndarray]:
    """Pixel polygons covering `target` (uint8 0/1), within the limits; closing as a last resort."""
    # Kept islands too small to matter for a camera mask are covered rather than cut around.
    mask = _fill_small_holes(target, (4 * margin) ** 2)
    last: LimitsExceeded | None = None
    # Closing (dilate then erode) only adds area: it merges nearby pieces and fills narrow gaps,
    # trading a little over-coverage for fewer masks. Tried in growing steps.
    for close in (0, 2, 4, 8, 16, 32, 64):
        work = mask if close == 0 else cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disc(close))
        try:
            if limits.rectangle_only:
                return _rectangles(work, limits.max_masks)
            return _polygons(work, width, height, limits)
        except LimitsExceeded as exc:
            last = exc
    assert last is not None
    raise last


def _fill_small_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return mask
    out = mask.copy()
    for contour, h in zip(contours, hierarchy[0], strict=True):
        if h[3] >= 0 and cv2.contourArea(contour) <= max_area:
            cv2.drawContours(out, [contour], -1, 1, thickness=cv2.FILLED)
            # The hole's outline pixels are part of the surrounding region already; filling
            # also covers its inside.
    return out


def _pad(mask: np.ndarray, pad: int) -> np.ndarray:
    # Outside the frame is free to cover: replicating the border lets pieces reach past it, so
    # their edges along the frame end up outside it and are clipped to the outline exactly.
    return cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def _simple_pieces(mask: np.ndarray) -> list[np.ndarray]:
    """Split a 0/1 mask into connected pieces without holes, cutting each hole in two."""
    out: list[np.ndarray] = []
    work = [mask]
    while work:
        m = work.pop()
        n, labels = cv2.connectedComponents(m, connectivity=8)
        for i in range(1, n):
            comp = (labels == i).astype(np.uint8)
            contours, hierarchy = cv2.findContours(comp, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
            holes = [c for c, h in zip(contours, hierarchy[0], strict=True) if h[3] >= 0]
            if not holes:
                out.append(comp)
                continue
            hole = max(holes, key=lambda c: cv2.contourArea(c))
            _x, y, _w, h = cv2.boundingRect(hole)
            row = y + h // 2
            top = comp.copy()
            top[row + 1 :] = 0
            comp[: row + 1] = 0
            work += [top, comp]
        if len(out) > 4096:
            raise LimitsExceeded("the anonymised area falls apart into too many pieces")
    return out


def _polygons(mask: np.ndarray, width: int, height: int, limits: MaskLimits) -> list[np.ndarray]:
    pad = 4
    pieces = _simple_pieces(_pad(mask, pad))
    if len(pieces) > limits.max_masks:
        raise LimitsExceeded(
            f"the plan needs {len(pieces)} masks, the camera accepts {limits.max_masks}"
        )
    frame = (pad - 0.5, pad - 0.5, pad + width - 0.5, pad + height - 0.5)
    out: list[np.ndarray] = []
    for piece in pieces:
        # One pixel of growth puts the outline through pixel centres *around* the piece, so the
        # polygon contains every centre of the piece, not just runs through its border pixels.
        grown = cv2.dilate(piece, np.ones((3, 3), np.uint8))
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contour = max(contours, key=lambda c: cv2.contourArea(c))
        poly = contour.reshape(-1, 2).astype(np.float64)
        budget = limits.max_points
        while True:
            reduced = _reduce(poly, budget, frame)
            clipped = clip_polygon_rect(reduced, *frame)
            clipped = _drop_collinear(clipped)
            if len(clipped) <= limits.max_points:
                break
            budget -= len(clipped) - limits.max_points
            if budget < 3:
                raise LimitsExceeded(
                    f"a mask needs more than the camera's {limits.max_points} points"
                )
        if len(clipped) >= 3:
            out.append(clipped - pad)
    return out


def _rectangles(mask: np.ndarray, max_masks: int) -> list[np.ndarray]:
    """Axis-aligned rectangles covering the mask: bands cut at each hole's top and bottom."""
    pieces = _band_pieces(mask)
    boxes = [_box_of(p) for p in pieces]
    if len(boxes) > max_masks:
        raise LimitsExceeded(
            f"the plan needs {len(boxes)} rectangles, the camera accepts {max_masks}"
        )
    # Spend spare masks where a box covers most that it need not: split it in two bands.
    entries = [(b, p) for b, p in zip(boxes, pieces, strict=True)]
    while len(entries) < max_masks:
        waste = [(_box_area(b) - int(np.count_nonzero(p)), i) for i, (b, p) in enumerate(entries)]
        cost, worst = max(waste)
        if cost <= 0:
            break
        box, piece = entries[worst]
        x0, y0, x1, y1 = box
        if y1 - y0 < 2:
            break
        mid = (y0 + y1) // 2
        upper, lower = piece.copy(), piece.copy()
        upper[mid:] = 0
        lower[:mid] = 0
        split = [(_box_of(q), q) for q in (upper, lower) if q.any()]
        gain = cost - sum(_box_area(b) - int(np.count_nonzero(q)) for b, q in split)
        if gain <= 0:
            break
        entries[worst : worst + 1] = split
    out = []
    for (x0, y0, x1, y1), _ in entries:
        # Pixel rows/cols x0..x1-1 as a rectangle on their outer pixel edges.
        out.append(
            np.array(
                [
                    [x0 - 0.5, y0 - 0.5],
                    [x1 - 0.5, y0 - 0.5],
                    [x1 - 0.5, y1 - 0.5],
                    [x0 - 0.5, y1 - 0.5],
                ]
            )
        )
    return out


def _band_pieces(mask: np.ndarray) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    work = [mask]
    while work:
        m = work.pop()
        n, labels = cv2.connectedComponents(m, connectivity=8)
        for i in range(1, n):
            comp = (labels == i).astype(np.uint8)
            contours, hierarchy = cv2.findContours(comp, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            holes = [c for c, h in zip(contours, hierarchy[0], strict=True) if h[3] >= 0]
            if not holes:
                out.append(comp)
                continue
            _x, y, _w, h = cv2.boundingRect(max(holes, key=lambda c: cv2.contourArea(c)))
            # Three bands: above the hole, beside it, below it. The hole's contour runs along
            # the pixels around it, so its inside is rows y+1 .. y+h-2.
            for lo, hi in ((0, y + 1), (y + 1, y + h - 1), (y + h - 1, comp.shape[0])):
                band = np.zeros_like(comp)
                band[lo:hi] = comp[lo:hi]
                if band.any():
                    work.append(band)
        if len(out) > 4096:
            raise LimitsExceeded("the anonymised area falls apart into too many pieces")
    return out


def _box_of(piece: np.ndarray) -> Box:
    x, y, w, h = cv2.boundingRect(piece)
    return x, y, x + w, y + h


def _box_area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _drop_collinear(poly: np.ndarray) -> np.ndarray:
    if len(poly) < 4:
        return poly
    keep = []
    n = len(poly)
    for i in range(n):
        a, b, c = poly[i - 1], poly[i], poly[(i + 1) % n]
        if abs(_cross(b - a, c - b)) > 1e-9 and not np.allclose(a, b):
            keep.append(b)
    return np.array(keep) if len(keep) >= 3 else poly


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _clipped_area(tri: np.ndarray, frame: tuple[float, float, float, float]) -> float:
    part = clip_polygon_rect(tri, *frame)
    return abs(_area(part)) if len(part) >= 3 else 0.0


def _reduce(poly: np.ndarray, budget: int, frame: tuple[float, float, float, float]) -> np.ndarray:
    """Fewer vertices, never less area: greedy outward simplification of a simple polygon.

    Two moves, both adding a triangle that lies outside the polygon: drop a reflex (or straight)
    vertex, or replace two convex vertices by the meeting point of their outer edges. The
    cheapest move (added area inside the frame) goes first; a move is taken only if no other
    vertex or edge enters its triangle, so the polygon stays simple and keeps all it covered.
    """
    pts = np.asarray(poly, dtype=np.float64)
    if _area(pts) < 0:
        pts = pts[::-1].copy()
    n = len(pts)
    if n <= budget:
        return pts
    xy = [p.copy() for p in pts]
    prev = [(i - 1) % n for i in range(n)]
    nxt = [(i + 1) % n for i in range(n)]
    alive = [True] * n
    version = [0] * n
    count = n
    heap: list[tuple[float, int, int, int, str]] = []

    def push(i: int) -> None:
        p, q = prev[i], nxt[i]
        a, b, c = xy[p], xy[i], xy[q]
        turn = _cross(b - a, c - b)
        if turn <= 1e-12:
            cost = _clipped_area(np.array([a, b, c]), frame)
            heapq.heappush(heap, (cost, version[i], i, -1, "drop"))
        else:
            q2 = nxt[q]
            d = xy[q2]
            turn2 = _cross(c - b, d - c)
            if turn2 > 1e-12:
                x = _meet(a, b, c, d)
                if x is not None:
                    cost = _clipped_area(np.array([b, x, c]), frame)
                    heapq.heappush(heap, (cost, version[i], i, version[q], "extend"))

    for i in range(n):
        push(i)

    def arrays() -> tuple[np.ndarray, np.ndarray]:
        idx = [i for i in range(n) if alive[i]]
        ids = np.array(idx)
        return ids, np.array([xy[i] for i in idx])

    ids, live = arrays()
    dirty = False
    while count > budget and heap:
        _cost, ver, i, ver2, move = heapq.heappop(heap)
        if not alive[i] or version[i] != ver:
            continue
        if dirty:
            ids, live = arrays()
            dirty = False
        p, q = prev[i], nxt[i]
        if move == "drop":
            tri = np.array([xy[p], xy[i], xy[q]])
            if not _triangle_clear(tri, live, ids, {p, i, q}):
                continue
            alive[i] = False
            nxt[p], prev[q] = q, p
            count -= 1
            for j in (p, q):
                version[j] += 1
            dirty = True
            for j in (prev[p], p, q):
                push(j)
        else:
            if not alive[q] or version[q] != ver2 or nxt[q] == p:
                continue
            q2 = nxt[q]
            x = _meet(xy[p], xy[i], xy[q], xy[q2])
            if x is None:
                continue
            tri = np.array([xy[i], x, xy[q]])
            if not _triangle_clear(tri, live, ids, {p, i, q, q2}) or _edges_cross(
                live, ids, [(xy[p], x), (x, xy[q2])], {p, i, q, q2}, nxt
            ):
                continue
            # i becomes the meeting point; q goes.
            xy[i] = x
            alive[q] = False
            nxt[i], prev[q2] = q2, i
            count -= 1
            for j in (p, i, q2):
                version[j] += 1
            dirty = True
            for j in (prev[p], p, i, q2):
                push(j)
    ids, live = arrays()
    if count > budget:
        hull = cv2.convexHull(live.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        if len(hull) < len(live):
            return _reduce(hull, budget, frame)
    return live


def _meet(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray | None:
    """Where the ray a->b (beyond b) meets the ray d->c (beyond c), or None."""
    r, s = b - a, c - d
    den = _cross(r, s)
    if abs(den) < 1e-12:
        return None
    t = _cross(d - a, s) / den
    u = _cross(d - a, r) / den
    if t <= 1.0 or u <= 1.0:
        return None
    x: np.ndarray = a + t * r
    return x


def _triangle_clear(tri: np.ndarray, live: np.ndarray, ids: np.ndarray, skip: set[int]) -> bool:
    """No other live vertex inside or on the triangle."""
    a, b, c = tri
    lo = tri.min(axis=0) - 1e-9
    hi = tri.max(axis=0) + 1e-9
    near = np.all((live >= lo) & (live <= hi), axis=1)
    if not near.any():
        return True
    cand = live[near]
    cand_ids = ids[near]
    area = _cross(b - a, c - a)
    if abs(area) < 1e-12:
        return True
    sign = 1.0 if area > 0 else -1.0
    d1 = sign * ((b[0] - a[0]) * (cand[:, 1] - a[1]) - (b[1] - a[1]) * (cand[:, 0] - a[0]))
    d2 = sign * ((c[0] - b[0]) * (cand[:, 1] - b[1]) - (c[1] - b[1]) * (cand[:, 0] - b[0]))
    d3 = sign * ((a[0] - c[0]) * (cand[:, 1] - c[1]) - (a[1] - c[1]) * (cand[:, 0] - c[0]))
    inside = (d1 >= -1e-9) & (d2 >= -1e-9) & (d3 >= -1e-9)
    return not any(int(k) not in skip for k in cand_ids[inside])


def _edges_cross(
    live: np.ndarray,
    ids: np.ndarray,
    segments: list[tuple[np.ndarray, np.ndarray]],
    skip: set[int],
    nxt: list[int],
) -> bool:
    """True if any live polygon edge (not touching `skip`) properly crosses a segment."""
    pos = {int(k): j for j, k in enumerate(ids)}
    starts = live
    ends = np.array([live[pos[nxt[int(k)]]] for k in ids])
    ok = np.array([int(k) not in skip and nxt[int(k)] not in skip for k in ids])
    if not ok.any():
        return False
    s0, s1 = starts[ok], ends[ok]
    for p, q in segments:
        r = q - p
        e = s1 - s0
        den = r[0] * e[:, 1] - r[1] * e[:, 0]
        w = s0 - p
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (w[:, 0] * e[:, 1] - w[:, 1] * e[:, 0]) / den
            u = (w[:, 0] * r[1] - w[:, 1] * r[0]) / den
        hit = (np.abs(den) > 1e-12) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
        if hit.any():
            return True
    return False
