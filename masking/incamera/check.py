"""The mask colour (ONVIF YCbCr) and the frame check: does a decoded picture carry the masks
the plan needs, and only those?"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from masking.compile import zone_masks
from masking.incamera.coords import Box, YUVPlanes, default_margin_px, disc
from masking.plan import MaskPlan

# -- colour -----------------------------------------------------------------------------------

YCBCR_COLORSPACE = "http://www.onvif.org/ver10/colorspace/YCbCr"


@dataclass(frozen=True, slots=True)
class MaskColor:
    """A colour in ONVIF's default YCbCr space (JPEG: full range 0..255, BT.601 matrix)."""

    y: float
    cb: float
    cr: float

    def rgb(self) -> tuple[float, float, float]:
        y, cb, cr = self.y, self.cb - 128.0, self.cr - 128.0
        r = y + 1.402 * cr
        g = y - 0.344136 * cb - 0.714136 * cr
        b = y + 1.772 * cb
        return tuple(min(255.0, max(0.0, c)) for c in (r, g, b))  # type: ignore[return-value]

    def stream_yuv(
        self, matrix: Literal["bt601", "bt709"] = "bt601", full_range: bool = False
    ) -> tuple[int, int, int]:
        """The 8-bit Y, U, V a stream with this matrix and range carries for this colour."""
        kr, kb = (0.299, 0.114) if matrix == "bt601" else (0.2126, 0.0722)
        r, g, b = (c / 255.0 for c in self.rgb())
        luma = kr * r + (1.0 - kr - kb) * g + kb * b
        u = (b - luma) / (2.0 * (1.0 - kb))
        v = (r - luma) / (2.0 * (1.0 - kr))
        if full_range:
            vals = (255.0 * luma, 128.0 + 255.0 * u, 128.0 + 255.0 * v)
        else:
            vals = (16.0 + 219.0 * luma, 128.0 + 224.0 * u, 128.0 + 224.0 * v)
        y8, u8, v8 = (int(min(255, max(0, round(x)))) for x in vals)
        return y8, u8, v8

    def distance(self, other: MaskColor) -> float:
        return math.dist((self.y, self.cb, self.cr), (other.y, other.cb, other.cr))


# A vivid purple (RGB ~ 201, 24, 228): far from grey, rare as a flat area in street scenes, so a
# solid patch of it is the camera's mask and not a wall, the sky or a night-time shadow.
DEFAULT_MASK_COLOR = MaskColor(100.0, 200.0, 200.0)


def pick_mask_color(
    colors: Sequence[MaskColor] = (),
    ranges: Sequence[tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = (),
    preferred: MaskColor = DEFAULT_MASK_COLOR,
) -> MaskColor:
    """The colour to request: `preferred` if the camera's options allow it, else the nearest.

    `colors` is the camera's ColorList, `ranges` its YCbCr ColorspaceRanges ((min, max) for Y,
    Cb, Cr). With neither (a camera that lists no options) the preferred colour is asked for.
    """
    candidates: list[MaskColor] = list(colors)
    for ry, rb, rr in ranges:
        candidates.append(
            MaskColor(
                min(max(preferred.y, ry[0]), ry[1]),
                min(max(preferred.cb, rb[0]), rb[1]),
                min(max(preferred.cr, rr[0]), rr[1]),
            )
        )
    if not candidates:
        return preferred

    # Prefer the nearest to the preferred colour; among equals the most saturated (far from grey).
    def rank(c: MaskColor) -> tuple[float, float]:
        return (c.distance(preferred), -math.hypot(c.cb - 128.0, c.cr - 128.0))

    return min(candidates, key=rank)


# -- the check --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckParams:
    """Thresholds of the frame check; the defaults survive H.264 at camera bitrates."""

    # |decoded - expected| allowed for a masked sample (8-bit Y, and U/V).
    tolerance_y: int = 20
    tolerance_c: int = 14
    # Every anonymised cell must have at least this fraction of its samples in the mask colour
    # (a cell is ~32 px square at 1080 lines: a hole of ~7x7 px in a cell fails it).
    min_cell_fraction: float = 0.95
    # A kept cell counts as painted over when this fraction of it is in the mask colour; the
    # check fails when more than `max_kept_painted` of the kept cells are painted.
    painted_cell_fraction: float = 0.8
    max_kept_painted: float = 0.05
    # A kept cell is textured when its luma standard deviation exceeds `texture_std`; the check
    # fails when fewer than `min_kept_textured` of the kept cells are (a blank picture).
    texture_std: float = 1.5
    min_kept_textured: float = 0.05
    # Pixels next to a mask edge are skipped (compression smears edges); None: scaled to height.
    edge_px: int | None = None
    # Cell side in pixels; None: ~1/34 of the height, at least 16.
    cell_px: int | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    # None when ok; else "unmasked" (an anonymised cell is not the mask colour), "kept_masked"
    # (the camera masks kept area) or "kept_flat" (the kept area is a blank fill).
    reason: str | None
    # Anonymised samples in the mask colour / all anonymised samples checked.
    masked_fraction: float
    # The least masked anonymised cell: its fraction, and where it is (pixels).
    worst_fraction: float
    worst_cell: Box | None
    unmasked_cells: int
    anon_cells: int
    kept_cells: int
    kept_painted_fraction: float
    kept_textured_fraction: float

    def describe(self) -> str:
        text = (
            f"masked {self.masked_fraction:.1%} (worst cell {self.worst_fraction:.1%} at "
            f"{self.worst_cell}, {self.unmasked_cells}/{self.anon_cells} cells unmasked); kept: "
            f"{self.kept_painted_fraction:.1%} painted, {self.kept_textured_fraction:.1%} "
            f"textured of {self.kept_cells} cells"
        )
        return text if self.ok else f"{self.reason}: {text}"


@dataclass(frozen=True, eq=False)
class MaskCheck:
    """A plan's check compiled for one frame size; `verify` runs it on one decoded frame.

    Works on the decoder's own YUV 4:2:0 planes, sampled at chroma resolution (every other luma
    row and column): no colour conversion (a BGR copy of a 1080p frame costs more than the whole
    check), the mask colour is defined in YCbCr, and chroma is where a mask colour stands out.
    """

    width: int
    height: int
    params: CheckParams
    cell: int  # in half-resolution samples
    edge_px: int
    anon: np.ndarray = field(repr=False)  # uint8 0/255, half resolution, padded to cells
    kept: np.ndarray = field(repr=False)
    kept_f: np.ndarray = field(repr=False)  # float32 0/1 of `kept`
    anon_mean: np.ndarray = field(repr=False)  # per cell: fraction of samples in the region
    kept_mean: np.ndarray = field(repr=False)
    anon_cells: np.ndarray = field(repr=False)  # bool per cell: counted
    kept_cells: np.ndarray = field(repr=False)

    @classmethod
    def build(
        cls,
        plan: MaskPlan,
        width: int,
        height: int,
        *,
        covered: np.ndarray | None = None,
        params: CheckParams | None = None,
    ) -> MaskCheck:
        """Compile the check. `covered`: what the camera's masks cover (else the plan grown by
        the default margin): the kept area is checked only away from it."""
        params = params or CheckParams()
        anon = zone_masks(plan, width, height) > 0
        if covered is None:
            covered = cv2.dilate(anon.astype(np.uint8), disc(default_margin_px(height))) > 0
        edge = params.edge_px if params.edge_px is not None else max(4, math.ceil(height / 135))
        cell_px = params.cell_px if params.cell_px is not None else max(16, round(height / 34))
        cell = max(4, cell_px // 2)
        # Erode each region away from the other (and from the frame border, where encoders
        # and scalers smear too).
        k = disc(edge)
        anon_in = cv2.erode(anon.astype(np.uint8), k, borderType=cv2.BORDER_REPLICATE)
        kept_in = cv2.erode((~covered).astype(np.uint8), k, borderType=cv2.BORDER_REPLICATE)
        h2, w2 = (height + 1) // 2, (width + 1) // 2
        hc, wc = -(-h2 // cell), -(-w2 // cell)

        def half(m: np.ndarray) -> np.ndarray:
            small = np.ascontiguousarray(m[::2, ::2])
            padded = np.zeros((hc * cell, wc * cell), np.uint8)
            padded[:h2, :w2] = small * 255
            return padded

        anon_h, kept_h = half(anon_in), half(kept_in)
        # Float means: exact fractions for cells only partly in a region.
        anon_mean = _cell_mean((anon_h > 0).astype(np.float32), wc, hc)
        kept_mean = _cell_mean((kept_h > 0).astype(np.float32), wc, hc)
        for arr in (anon_h, kept_h, anon_mean, kept_mean):
            arr.setflags(write=False)
        return cls(
            width=width,
            height=height,
            params=params,
            cell=cell,
            edge_px=edge,
            anon=anon_h,
            kept=kept_h,
            kept_f=(kept_h > 0).astype(np.float32),
            anon_mean=anon_mean,
            kept_mean=kept_mean,
            # A cell counts when a quarter of it lies in the region.
            anon_cells=anon_mean >= 0.25,
            kept_cells=kept_mean >= 0.25,
        )

    def verify(self, planes: YUVPlanes, color: tuple[int, int, int]) -> CheckResult:
        """Check one decoded frame's (Y, U, V) planes against the expected 8-bit mask colour."""
        y, u, v = planes
        if y.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {y.shape[1]}x{y.shape[0]}, check is for "
                             f"{self.width}x{self.height}")  # fmt: skip
        p = self.params
        h2, w2 = (self.height + 1) // 2, (self.width + 1) // 2
        hc, wc = self.anon_mean.shape
        yh = np.ascontiguousarray(y[::2, ::2])
        cy, cu, cv = color
        ok = cv2.bitwise_and(
            cv2.inRange(yh, cy - p.tolerance_y, cy + p.tolerance_y),
            cv2.inRange(u[:h2, :w2], cu - p.tolerance_c, cu + p.tolerance_c),
        )
        ok = cv2.bitwise_and(ok, cv2.inRange(v[:h2, :w2], cv - p.tolerance_c, cv + p.tolerance_c))
        okp = np.zeros_like(self.anon)
        okp[:h2, :w2] = ok
        # uint8 box means round to 1/255 of a cell: at most ~1% of a quarter-filled cell.
        in_anon = _cell_mean(cv2.bitwise_and(okp, self.anon), wc, hc) / 255.0
        in_kept = _cell_mean(cv2.bitwise_and(okp, self.kept), wc, hc) / 255.0
        with np.errstate(divide="ignore", invalid="ignore"):
            anon_frac = np.where(self.anon_cells, in_anon / self.anon_mean, 1.0)
            kept_frac = np.where(self.kept_cells, in_kept / self.kept_mean, 0.0)
        n_anon = int(np.count_nonzero(self.anon_cells))
        n_kept = int(np.count_nonzero(self.kept_cells))
        unmasked = int(np.count_nonzero(anon_frac < p.min_cell_fraction))
        total_anon = float(self.anon_mean[self.anon_cells].sum())
        masked_fraction = (
            float(in_anon[self.anon_cells].sum()) / total_anon if total_anon > 0 else 1.0
        )
        worst_cell: Box | None = None
        worst = 1.0
        if n_anon:
            idx = int(np.argmin(anon_frac))
            worst = float(anon_frac.flat[idx])
            r, c = divmod(idx, wc)
            s = 2 * self.cell
            worst_cell = (c * s, r * s, min(self.width, (c + 1) * s), min(self.height, (r + 1) * s))
        painted = 0.0
        textured = 1.0
        if n_kept:
            painted = float(np.count_nonzero(kept_frac[self.kept_cells] >= p.painted_cell_fraction))
            painted /= n_kept
            yp = np.zeros(self.kept_f.shape, np.float32)
            yp[:h2, :w2] = yh
            yk = yp * self.kept_f
            m1 = _cell_mean(yk, wc, hc)
            m2 = _cell_mean(yk * yp, wc, hc)
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = m1 / self.kept_mean
                var = m2 / self.kept_mean - mean * mean
            textured = float(np.count_nonzero(var[self.kept_cells] > p.texture_std**2)) / n_kept
        reason = None
        if unmasked:
            reason = "unmasked"
        elif painted > p.max_kept_painted:
            reason = "kept_masked"
        elif n_kept and textured < p.min_kept_textured:
            reason = "kept_flat"
        return CheckResult(
            ok=reason is None,
            reason=reason,
            masked_fraction=masked_fraction,
            worst_fraction=worst,
            worst_cell=worst_cell,
            unmasked_cells=unmasked,
            anon_cells=n_anon,
            kept_cells=n_kept,
            kept_painted_fraction=painted,
            kept_textured_fraction=textured,
        )

    def verify_frame(self, frame: Any, color: MaskColor) -> CheckResult:
        """Check a PyAV VideoFrame, with the expected colour in the frame's matrix and range."""
        planes, matrix, full = planes_of(frame)
        return self.verify(planes, color.stream_yuv(matrix, full))


def _cell_mean(img: np.ndarray, wc: int, hc: int) -> np.ndarray:
    # INTER_AREA with a whole-number factor is an exact box average, and fast.
    out: np.ndarray = cv2.resize(img, (wc, hc), interpolation=cv2.INTER_AREA).astype(np.float32)
    return out


def planes_of(frame: Any) -> tuple[YUVPlanes, Literal["bt601", "bt709"], bool]:
    """(Y, U, V) views of a PyAV yuv420p/yuvj420p frame, its matrix and whether full range.

    Other pixel formats are converted to yuv420p first. The views are read-only in spirit:
    the frame may share its buffer with the decoder's reference pictures.
    """
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    views = []
    for plane in frame.planes:
        arr = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        views.append(arr[:, : plane.width])
    # AVColorSpace: 1 is BT.709. Unspecified (2) is taken as players take it: BT.709 from 720
    # lines up (HD), BT.601 below; the 601 variants are BT.601.
    space = int(frame.colorspace)
    hd = space == 2 and frame.height >= 720
    matrix: Literal["bt601", "bt709"] = "bt709" if space == 1 or hd else "bt601"
    full = frame.format.name == "yuvj420p" or int(frame.color_range) == 2
    return (views[0], views[1], views[2]), matrix, full
