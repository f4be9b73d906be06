"""Pixel operations: blur, pixelate and fill a region of a plane, in place.

A "plane" is a 2-D uint8 array (Y, U or V of a 4:2:0 frame) or a 3-D uint8 BGR image; views with
a row stride (PyAV planes with line padding) work, because OpenCV writes through them.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from masking.compile import Box, PlaneRegion

__all__ = [
    "anonymise_box",
    "anonymise_plane_into",
    "apply_regions",
    "blur",
    "fill",
    "pixelate",
]


def _shrink_area(view: np.ndarray, step: int) -> np.ndarray:
    """Mean of each step x step block (partial blocks at the right/bottom edge included).

    OpenCV's area resize has a fast path for whole-number ratios only (a ratio like 1080/16 =
    67.5 is ~3x slower), so shrink the whole-multiple part and the leftover strips separately.
    """
    h, w = view.shape[:2]
    hw, ww = h - h % step, w - w % step
    ny, nx = -(-h // step), -(-w // step)
    small = np.empty((ny, nx, *view.shape[2:]), dtype=view.dtype)
    area = cv2.INTER_AREA
    if hw and ww:
        small[: hw // step, : ww // step] = cv2.resize(
            view[:hw, :ww], (ww // step, hw // step), interpolation=area
        ).reshape(small[: hw // step, : ww // step].shape)
    if ww < w and hw:
        small[: hw // step, nx - 1 :] = cv2.resize(
            view[:hw, ww:], (1, hw // step), interpolation=area
        ).reshape(small[: hw // step, nx - 1 :].shape)
    if hw < h and ww:
        small[ny - 1 :, : ww // step] = cv2.resize(
            view[hw:, :ww], (ww // step, 1), interpolation=area
        ).reshape(small[ny - 1 :, : ww // step].shape)
    if hw < h and ww < w:
        corner = view[hw:, ww:]
        small[ny - 1, nx - 1] = np.round(corner.reshape(-1, *view.shape[2:]).mean(axis=0))
    return small


def _upscale_blocks(small: np.ndarray, view: np.ndarray, block: int) -> None:
    """Write each pixel of `small` as a block x block tile into `view` (whose sides are whole
    multiples of `block`), in place: one row of tiles is built once and broadcast down its
    `block` rows. Several times faster than OpenCV's nearest-neighbour resize, same pixels."""
    by = small.shape[0]
    rows = np.repeat(small, block, axis=1)  # (by, bx * block[, c])
    s0 = view.strides[0]
    tiles = np.lib.stride_tricks.as_strided(
        view,
        shape=(by, block, *view.shape[1:]),
        strides=(block * s0, s0, *view.strides[1:]),
        writeable=True,
    )
    tiles[...] = rows[:, None]


def pixelate(view: np.ndarray, block: int, out: np.ndarray | None = None) -> None:
    """Replace each block x block tile of the view by its mean, in place (or into `out`, a
    view of the same shape: the source is then only read)."""
    h, w = view.shape[:2]
    dst = view if out is None else out
    if block < 2 or h == 0 or w == 0:
        if out is not None:
            np.copyto(out, view)
        return
    small = _shrink_area(view, block)
    ny, nx = small.shape[:2]
    hw, ww = h - h % block, w - w % block
    near = cv2.INTER_NEAREST_EXACT
    bx, by = ww // block, hw // block
    # Each part is upscaled by a whole number of pixels per block, so blocks stay on the grid.
    if by and bx:
        _upscale_blocks(small[:by, :bx], dst[:hw, :ww], block)
    if ww < w and by:
        cv2.resize(small[:by, nx - 1 :], (w - ww, hw), dst=dst[:hw, ww:], interpolation=near)
    if hw < h and bx:
        cv2.resize(small[ny - 1 :, :bx], (ww, h - hw), dst=dst[hw:, :ww], interpolation=near)
    if hw < h and ww < w:
        dst[hw:, ww:] = small[ny - 1, nx - 1]


def blur(view: np.ndarray, radius: int, out: np.ndarray | None = None) -> None:
    """Strong blur in place (or into `out`, a view of the same shape): area-shrink by
    `radius`, smooth, and scale back up.

    The shrink throws away all detail finer than `radius` pixels, so no later filter can bring it
    back; the smoothing and the bilinear upscale only hide the blocks.
    """
    h, w = view.shape[:2]
    dst = view if out is None else out
    if radius < 2 or h == 0 or w == 0:
        if out is not None:
            np.copyto(out, view)
        return
    small = _shrink_area(view, radius)
    if min(small.shape[:2]) >= 3:
        small = cv2.GaussianBlur(small, (3, 3), 0, borderType=cv2.BORDER_REPLICATE)
    cv2.resize(small, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)


def fill(view: np.ndarray, value: int | Sequence[int]) -> None:
    view[...] = value


def anonymise_view(
    view: np.ndarray, method: str, strength: int, fill_value: int | Sequence[int]
) -> None:
    if method == "pixelate":
        pixelate(view, strength)
    elif method == "blur":
        blur(view, strength)
    elif method == "fill":
        fill(view, fill_value)
    else:
        raise ValueError(f"unknown method {method!r}")


def apply_regions(
    plane: np.ndarray,
    regions: Sequence[PlaneRegion],
    method: str,
    strength: int,
    fill_value: int | Sequence[int],
) -> None:
    """Anonymise each region's box of `plane` in place, then put its kept pixels back."""
    for region in regions:
        x0, y0, x1, y1 = region.box
        saved = None
        if region.keep_box is not None:
            kx0, ky0, kx1, ky1 = region.keep_box
            # Only the kept area's bounding box is copied, not the frame.
            saved = plane[ky0:ky1, kx0:kx1].copy()
        anonymise_view(plane[y0:y1, x0:x1], method, strength, fill_value)
        if saved is not None and region.keep_box is not None and region.keep_mask is not None:
            kx0, ky0, kx1, ky1 = region.keep_box
            cv2.copyTo(saved, region.keep_mask, plane[ky0:ky1, kx0:kx1])


def anonymise_plane_into(
    src: np.ndarray,
    dst: np.ndarray,
    method: str,
    strength: int,
    fill_value: int,
    keep: tuple[Box, np.ndarray] | None,
) -> None:
    """`dst` := the whole plane `src` anonymised, except the pixels under `keep` (a box and a
    0/255 mask of its size), which are copied from `src`. `src` is only read.

    For plans that anonymise most of the frame this does less work than copying the frame and
    anonymising its regions in place: every pixel is read once and written once. Pixelation
    blocks sit on the same grid as `apply_regions` (regions are aligned to it), so both give
    the same pixels; blur smooths across region borders (it sees the whole plane).
    """
    if method == "pixelate":
        pixelate(src, strength, out=dst)
    elif method == "blur":
        blur(src, strength, out=dst)
    elif method == "fill":
        dst[...] = fill_value
    else:
        raise ValueError(f"unknown method {method!r}")
    if keep is not None:
        (x0, y0, x1, y1), mask = keep
        cv2.copyTo(src[y0:y1, x0:x1], mask, dst[y0:y1, x0:x1])


def anonymise_box(
    plane: np.ndarray,
    box: Box,
    method: str,
    strength: int,
    fill_value: int | Sequence[int],
) -> None:
    """Anonymise one box of a plane in place (boxes are clipped to the plane)."""
    h, w = plane.shape[:2]
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if x1 > x0 and y1 > y0:
        anonymise_view(plane[y0:y1, x0:x1], method, strength, fill_value)
