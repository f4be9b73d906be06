"""ONVIF mask coordinates: -1..1, (0, 0) in the centre, y up, relative to the video source
configuration's window; and the errors of in-camera masking."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from masking.geometry import rasterise

OnvifPoint = tuple[float, float]
OnvifPolygon = tuple[OnvifPoint, ...]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), pixels
YUVPlanes = tuple[np.ndarray, np.ndarray, np.ndarray]


class InCameraError(ValueError):
    """A plan that cannot be handed to a camera as privacy masks."""


class NotStatic(InCameraError):
    """The plan uses detectors: only the transcode path can anonymise what moves."""


class LimitsExceeded(InCameraError):
    """The plan's anonymised area cannot be covered within the camera's mask limits."""


# -- coordinates ------------------------------------------------------------------------------


def to_onvif(points: Sequence[Sequence[float]]) -> OnvifPolygon:
    """Plan-normalised points (0..1, y down) -> ONVIF normalised points (-1..1, y up)."""
    return tuple((2.0 * float(u) - 1.0, 1.0 - 2.0 * float(v)) for u, v in points)


def from_onvif(points: Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    """ONVIF normalised points (-1..1, y up) -> plan-normalised points (0..1, y down)."""
    return tuple(((float(x) + 1.0) / 2.0, (1.0 - float(y)) / 2.0) for x, y in points)


def pixels_to_onvif(points: np.ndarray, width: int, height: int) -> OnvifPolygon:
    """Pixel points (centres at integers) -> ONVIF normalised points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x = (pts[:, 0] + 0.5) / width * 2.0 - 1.0
    y = 1.0 - (pts[:, 1] + 0.5) / height * 2.0
    # Clamp away float noise only: inputs are clipped to the frame outline already.
    x = np.clip(x, -1.0, 1.0)
    y = np.clip(y, -1.0, 1.0)
    return tuple((float(a), float(b)) for a, b in zip(x, y, strict=True))


def onvif_to_pixels(points: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    """ONVIF normalised points -> pixel points (centres at integers), float64 (N, 2)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.empty_like(pts)
    out[:, 0] = (pts[:, 0] + 1.0) / 2.0 * width - 0.5
    out[:, 1] = (1.0 - pts[:, 1]) / 2.0 * height - 0.5
    return out


def rasterise_onvif(polygons: Sequence[Sequence[Sequence[float]]], width: int, height: int) -> Any:
    """Boolean mask (H, W) of the pixels whose centre lies inside any ONVIF polygon."""
    return rasterise([onvif_to_pixels(p, width, height) for p in polygons], width, height)


def default_margin_px(height: int) -> int:
    """How far masks reach beyond the plan's anonymised area: 4 px at 1080 lines, 2 at 360."""
    return max(2, math.ceil(height / 270))


def disc(radius: int) -> np.ndarray:
    """A filled disc of `radius` pixels (a structuring element for growing and shrinking)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
