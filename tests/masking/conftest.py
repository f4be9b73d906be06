"""Fixtures for the masking tests: sample media, and synthetic scenes of known camera geometry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

SAMPLE_MEDIA = Path(__file__).resolve().parents[2] / ".." / "shared" / "sample_media"


@pytest.fixture(scope="session")
def sample_media() -> Path:
    """The shared sample footage and models; a missing folder is an error, not a skip."""
    if not (SAMPLE_MEDIA / "models" / "face_detection_yunet_2023mar.onnx").is_file():
        pytest.fail(
            f"sample media not found at {SAMPLE_MEDIA.resolve()}: the masking tests need "
            "../shared/sample_media beside the repository (see its SOURCES.md)"
        )
    return SAMPLE_MEDIA.resolve()


def imread(path: Path) -> np.ndarray:
    """cv2.imread that fails loudly instead of returning None."""
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return np.asarray(image)


@pytest.fixture(scope="session")
def image(sample_media: Path) -> Callable[[str], np.ndarray]:
    """Loads a sample image by name (BGR)."""

    def load(name: str) -> np.ndarray:
        return imread(sample_media / "images" / name)

    return load


@pytest.fixture(scope="session")
def models_dir(sample_media: Path) -> Path:
    return sample_media / "models"


@dataclass(frozen=True)
class Camera:
    """A pinhole camera over the ground plane z = 0 (world: x east, y north, z up, metres)."""

    width: int
    height: int
    focal: float
    centre: np.ndarray  # camera position (3,)
    rotation: np.ndarray  # world -> camera, rows are camera x (right), y (down), z (forward)

    @staticmethod
    def looking(
        width: int, height: int, focal: float, centre: tuple[float, ...], forward: tuple[float, ...]
    ) -> Camera:
        z = np.asarray(forward, dtype=np.float64)
        z /= np.linalg.norm(z)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        return Camera(
            width, height, focal, np.asarray(centre, dtype=np.float64), np.stack([x, y, z])
        )

    @property
    def k(self) -> np.ndarray:
        return np.array(
            [
                [self.focal, 0, (self.width - 1) / 2],
                [0, self.focal, (self.height - 1) / 2],
                [0, 0, 1],
            ]
        )

    def homography_px(self) -> np.ndarray:
        """Ground (X, Y) -> pixel centres; w is the depth, so w > 0 means in front."""
        r = self.rotation
        return np.asarray(self.k @ np.column_stack([r[:, 0], r[:, 1], -r @ self.centre]))

    def to_normalised(self, ground: np.ndarray) -> np.ndarray:
        g = np.asarray(ground, dtype=np.float64).reshape(-1, 2)
        uvw = g @ self.homography_px()[:, :2].T + self.homography_px()[:, 2]
        px = uvw[:, :2] / uvw[:, 2:3]
        return np.asarray((px + 0.5) / np.array([self.width, self.height]))

    def calibration(self, ground_points: list[tuple[float, float]]) -> list[dict[str, list[float]]]:
        img = self.to_normalised(np.array(ground_points))
        assert np.all((img >= 0) & (img <= 1)), f"calibration points leave the frame: {img}"
        return [
            {"image": [float(u), float(v)], "ground": [float(x), float(y)]}
            for (u, v), (x, y) in zip(img, ground_points, strict=True)
        ]

    def ground_of_pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel centre: ground X, Y and whether the ray hits the ground in front at all."""
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(self.k).T
        world = rays @ self.rotation  # camera -> world directions (R^T d)
        dz = world[..., 2]
        hits = dz < -1e-9
        s = np.where(hits, -self.centre[2] / np.where(hits, dz, -1.0), 0.0)
        gx = self.centre[0] + s * world[..., 0]
        gy = self.centre[1] + s * world[..., 1]
        return gx, gy, hits

    def render(self, seed: int = 0) -> np.ndarray:
        """A BGR frame: noise everywhere (so any anonymisation changes pixels) and a 1 m grid."""
        rng = np.random.default_rng(seed)
        img = rng.integers(20, 236, size=(self.height, self.width, 3), dtype=np.uint8)
        gx, gy, hits = self.ground_of_pixels()
        grid = hits & ((np.abs(gx - np.round(gx)) < 0.03) | (np.abs(gy - np.round(gy)) < 0.03))
        img[grid] = (240, 240, 240)
        return img


def strip_mask(cam: Camera, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """True where a pixel centre sees the ground rectangle [x0, x1] x [y0, y1]."""
    gx, gy, hits = cam.ground_of_pixels()
    return hits & (gx >= x0) & (gx <= x1) & (gy >= y0) & (gy <= y1)


def border(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Pixels within `radius` of the mask's edge (where a 1-pixel tolerance applies)."""
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    m = mask.astype(np.uint8)
    return np.asarray(cv2.dilate(m, k) != cv2.erode(m, k))


@pytest.fixture
def gothenburg_camera() -> Camera:
    """A school camera on a pole 14 m in front of a 12 m facade (y = 0), looking at it."""
    return Camera.looking(640, 360, 500.0, (6.0, 14.0, 6.0), (0.0, -13.0, -6.0))


@pytest.fixture
def gothenburg_plan(gothenburg_camera: Camera) -> Callable[[str], dict[str, object]]:
    def make(method: str) -> dict[str, object]:
        return {
            "version": 1,
            "method": method,
            "default": "anonymise",
            "calibration": gothenburg_camera.calibration(
                [(0.0, 0.0), (12.0, 0.0), (10.0, 6.0), (2.0, 6.0), (6.0, 3.0)]
            ),
            "zones": [
                {
                    "type": "facade_strip",
                    "action": "keep",
                    "facade": [[0.0, 0.0], [12.0, 0.0]],
                    "width_m": 2.0,
                }
            ],
        }

    return make


class Scenes:
    """Helpers for geometry tests, handed out by the `scenes` fixture."""

    Camera = Camera
    imread = staticmethod(imread)
    strip_mask = staticmethod(strip_mask)
    border = staticmethod(border)


@pytest.fixture
def scenes() -> type[Scenes]:
    return Scenes
