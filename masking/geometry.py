"""Ground-plane geometry: facade strips in metres, clipped at the horizon, projected to pixels.

Conventions: a homography `h` maps ground (X, Y, 1) in metres to normalised image (u, v, w) with
x right and y down, and is sign-fixed so that the visible ground has w > 0 (see
`plan.calibration_homography`). Points with w <= 0 are on or behind the camera's plane and have no
place in the image; polygons are clipped against w >= W_MIN *before* dividing by w, because
dividing first sends those vertices to the far side of the horizon and the filled polygon spans
the sky.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np

__all__ = [
    "clip_polygon_halfplane",
    "clip_polygon_rect",
    "facade_strip_polygons",
    "horizon_segment",
    "project_ground_polygon",
    "project_ground_segment",
    "project_points",
    "rasterise",
]

Poly = np.ndarray  # (N, 2) float64

# Fraction of the largest |w| seen on the calibration points: the clip keeps ground points whose
# image lies at most ~1/W_MIN_REL (in calibration-point units) from the principal area. Small
# enough to keep everything in view, large enough that 1/w stays finite and well conditioned.
W_MIN_REL = 1e-4
# Projected polygons are clipped to the frame enlarged by this many frame sizes, so that
# coordinates stay small integers for the rasteriser without moving any visible edge.
FRAME_MARGIN = 1.0


def clip_polygon_halfplane(poly: Poly, a: float, b: float, c: float) -> Poly:
    """Sutherland-Hodgman clip of a polygon to the half-plane a*x + b*y + c >= 0."""
    if len(poly) == 0:
        return poly
    d = poly[:, 0] * a + poly[:, 1] * b + c
    out: list[np.ndarray] = []
    n = len(poly)
    for i in range(n):
        j = (i + 1) % n
        pi, pj, di, dj = poly[i], poly[j], d[i], d[j]
        if di >= 0:
            out.append(pi)
        if (di >= 0) != (dj >= 0):
            t = di / (di - dj)
            out.append(pi + t * (pj - pi))
    if len(out) < 3:
        return np.zeros((0, 2), dtype=np.float64)
    return np.array(out, dtype=np.float64)


def clip_polygon_rect(poly: Poly, x0: float, y0: float, x1: float, y1: float) -> Poly:
    """Clip a polygon to an axis-aligned rectangle."""
    for a, b, c in ((1.0, 0.0, -x0), (-1.0, 0.0, x1), (0.0, 1.0, -y0), (0.0, -1.0, y1)):
        poly = clip_polygon_halfplane(poly, a, b, c)
        if len(poly) == 0:
            break
    return poly


def w_min(h: np.ndarray, reference: np.ndarray) -> float:
    """The smallest w treated as visible, relative to the calibration points' own w."""
    w = reference @ h[2, :2] + h[2, 2]
    return float(np.max(np.abs(w))) * W_MIN_REL


def project_points(h: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ground points; returns (normalised image points, w). Check w > 0 before use."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    uvw = pts @ h[:, :2].T + h[:, 2]
    w = uvw[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[:, :2] / w[:, None]
    return uv, w


def project_ground_polygon(h: np.ndarray, poly: Poly, wmin: float, width: int, height: int) -> Poly:
    """Ground polygon (metres) -> pixel polygon, with the invisible part clipped away.

    Pixel coordinates use pixel centres at integers: normalised x maps to x * width - 0.5.
    """
    visible = clip_polygon_halfplane(poly, float(h[2, 0]), float(h[2, 1]), float(h[2, 2]) - wmin)
    if len(visible) == 0:
        return visible
    uv, _ = project_points(h, visible)
    px = np.empty_like(uv)
    px[:, 0] = uv[:, 0] * width - 0.5
    px[:, 1] = uv[:, 1] * height - 0.5
    mx, my = FRAME_MARGIN * width, FRAME_MARGIN * height
    return clip_polygon_rect(px, -mx, -my, width + mx, height + my)


def facade_strip_polygons(
    facade: np.ndarray, width_m: float, side: Literal["left", "right", "both"]
) -> list[Poly]:
    """Convex ground polygons whose union is the strip along the facade polyline.

    One rectangle per segment on the chosen side, plus a circular wedge at each joint that bends
    away from that side, so the union is exactly "within width_m of the polyline" (square ends).
    """
    pts = np.asarray(facade, dtype=np.float64)
    sides: list[float] = {"left": [1.0], "right": [-1.0], "both": [1.0, -1.0]}[side]
    polys: list[Poly] = []
    normals: list[np.ndarray] = []
    for a, b in itertools.pairwise(pts):
        d = (b - a) / np.linalg.norm(b - a)
        normals.append(np.array([-d[1], d[0]]))  # left of the walking direction, x right / y up
    for s in sides:
        for (a, b), n in zip(itertools.pairwise(pts), normals, strict=True):
            off = s * width_m * n
            polys.append(np.array([a, b, b + off, a + off]))
        for k in range(1, len(pts) - 1):
            n0, n1 = s * normals[k - 1], s * normals[k]
            ang0, ang1 = math.atan2(n0[1], n0[0]), math.atan2(n1[1], n1[0])
            sweep = (ang1 - ang0 + math.pi) % (2 * math.pi) - math.pi
            # The wedge is needed only on the outside of the bend, where the rectangles part.
            turn = normals[k - 1][0] * normals[k][1] - normals[k - 1][1] * normals[k][0]
            if abs(sweep) < 1e-9 or (turn * s) > 0:
                continue
            steps = max(2, math.ceil(abs(sweep) / (math.pi / 16)))
            arc = [
                pts[k]
                + width_m * np.array([math.cos(ang0 + sweep * t), math.sin(ang0 + sweep * t)])
                for t in np.linspace(0.0, 1.0, steps + 1)
            ]
            polys.append(np.array([pts[k], *arc]))
    return polys


def horizon_segment(h: np.ndarray, width: int, height: int) -> tuple[Poly, Poly] | None:
    """The image of the ground's line at infinity, clipped to the frame, in pixels; or None."""
    # Points at infinity (X, Y, 0) map to h[:, :2] @ (X, Y); the horizon is the line through the
    # images of two directions. In normalised coordinates that line is l = p1 x p2.
    p1 = h[:, 0]
    p2 = h[:, 1]
    line = np.cross(p1, p2)
    # Scale to pixels: x_px = x * W - 0.5 etc.; substitute x = (x_px + 0.5) / W.
    a, b, c = float(line[0]) / width, float(line[1]) / height, float(line[2])
    c += 0.5 * (a + b)
    pts: list[np.ndarray] = []
    x0, y0, x1, y1 = -0.5, -0.5, width - 0.5, height - 0.5
    if abs(b) > 1e-15:
        for x in (x0, x1):
            y = -(a * x + c) / b
            if y0 <= y <= y1:
                pts.append(np.array([x, y]))
    if abs(a) > 1e-15:
        for y in (y0, y1):
            x = -(b * y + c) / a
            if x0 <= x <= x1:
                pts.append(np.array([x, y]))
    if len(pts) < 2:
        return None
    return pts[0], pts[-1]


def project_ground_segment(
    h: np.ndarray, a: np.ndarray, b: np.ndarray, wmin: float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """A ground segment's visible part in pixels (clipped at w >= wmin), or None."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    wa = float(h[2, 0] * a[0] + h[2, 1] * a[1] + h[2, 2]) - wmin
    wb = float(h[2, 0] * b[0] + h[2, 1] * b[1] + h[2, 2]) - wmin
    if wa < 0 and wb < 0:
        return None
    if wa < 0:
        a = a + (b - a) * (wa / (wa - wb))
    elif wb < 0:
        b = a + (b - a) * (wa / (wa - wb))
    uv, _ = project_points(h, np.stack([a, b]))
    px = uv * np.array([width, height]) - 0.5
    return px[0], px[1]


def rasterise(polys: list[Poly], width: int, height: int) -> np.ndarray:
    """Boolean mask of the pixels whose centre lies inside any polygon (even-odd per polygon).

    Pixel centres are at integer coordinates. Unlike cv2.fillPoly, which also paints every pixel
    an edge passes through (growing the area by up to a pixel), this samples exactly at pixel
    centres, so a kept strip keeps what it covers and nothing around it.
    """
    diff = np.zeros((height, width + 1), dtype=np.int32)
    for poly in polys:
        if len(poly) < 3:
            continue
        p = np.asarray(poly, dtype=np.float64)
        q = np.roll(p, -1, axis=0)
        rows_l: list[np.ndarray] = []
        xs_l: list[np.ndarray] = []
        for (x0, y0), (x1, y1) in zip(p, q, strict=True):
            if y0 == y1:
                continue
            lo, hi = (y0, y1) if y0 < y1 else (y1, y0)
            # Half-open [lo, hi): a vertex shared by two edges is counted once.
            rows = np.arange(max(0, math.ceil(lo)), min(height, math.ceil(hi)))
            if len(rows) == 0:
                continue
            rows_l.append(rows)
            xs_l.append(x0 + (rows - y0) * (x1 - x0) / (y1 - y0))
        if not rows_l:
            continue
        rows = np.concatenate(rows_l)
        xs = np.concatenate(xs_l)
        order = np.lexsort((xs, rows))
        rows, xs = rows[order], xs[order]
        # Crossings pair up row by row: inside between the 1st and 2nd, 3rd and 4th, ...
        r, xa, xb = rows[0::2], xs[0::2], xs[1::2]
        start = np.clip(np.ceil(xa), 0, width).astype(np.int64)
        stop = np.clip(np.floor(xb) + 1, 0, width).astype(np.int64)
        ok = stop > start
        np.add.at(diff, (r[ok], start[ok]), 1)
        np.add.at(diff, (r[ok], stop[ok]), -1)
    return np.cumsum(diff[:, :width], axis=1) > 0
