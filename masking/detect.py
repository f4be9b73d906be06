"""Detectors behind one small interface: faces (YuNet), people and vehicles (YOLOv8), plates.

Models are local files only; nothing here downloads anything. Each detector takes a BGR image
(a grey one is accepted and expanded) and returns boxes in that image's pixel coordinates.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from masking.plan import DetectConfig

__all__ = [
    "COCO_CLASSES",
    "Detection",
    "Detector",
    "ModelError",
    "PlatesFromVehicles",
    "UltralyticsDetector",
    "YoloOnnxDetector",
    "YuNetFaceDetector",
    "build_detectors",
]

# COCO ids of the shipped YOLOv8n export that matter for anonymisation.
COCO_CLASSES: dict[int, str] = {0: "person", 2: "vehicle", 3: "vehicle", 5: "vehicle", 7: "vehicle"}
_COCO_NAMES: dict[str, str] = {
    "person": "person",
    "car": "vehicle",
    "motorcycle": "vehicle",
    "bus": "vehicle",
    "truck": "vehicle",
}


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the detector's input
    score: float
    cls: str  # "face" | "person" | "vehicle" | "plate"


@runtime_checkable
class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]: ...


class ModelError(FileNotFoundError):
    """A model file is missing or cannot be loaded."""


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    return path


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected a BGR or grey image, got shape {image.shape}")


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    # OpenCV 5's DNN engine logs a harmless "targets not supported" warning per model load.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class YuNetFaceDetector:
    """Faces with OpenCV's YuNet (`cv2.FaceDetectorYN`)."""

    def __init__(self, model: Path, *, min_score: float = 0.5, nms: float = 0.3) -> None:
        self.model = _require(Path(model))
        self.min_score = min_score
        with _quiet_opencv():
            try:
                self._net = cv2.FaceDetectorYN.create(
                    str(self.model), "", (320, 320), min_score, nms, 5000
                )
            except cv2.error as exc:
                raise ModelError(f"cannot load face model {self.model}: {exc}") from exc
        self._size = (320, 320)

    def detect(self, image: np.ndarray) -> list[Detection]:
        img = _bgr(image)
        size = (img.shape[1], img.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(img)
        if faces is None:
            return []
        return [
            Detection((float(x), float(y), float(x + w), float(y + h)), float(f[14]), "face")
            for f in faces
            for x, y, w, h in [f[:4]]
        ]


def _letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping aspect into a size x size canvas padded with grey (as ultralytics does)."""
    h, w = img.shape[:2]
    r = min(size / w, size / h)
    nw, nh = round(w * r), round(h * r)
    canvas = np.full((size, size, 3), 114, dtype=np.uint8)
    dx, dy = (size - nw) // 2, (size - nh) // 2
    canvas[dy : dy + nh, dx : dx + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, r, float(dx), float(dy)


class YoloOnnxDetector:
    """A YOLOv8-style ONNX export (output 1 x (4 + classes) x anchors) through onnxruntime.

    `classes` maps the model's class ids to our class names (default: COCO person and vehicles);
    other ids are ignored. With `all_as` every class becomes that one (a plate model).
    """

    def __init__(
        self,
        model: Path,
        *,
        classes: Mapping[int, str] | None = None,
        all_as: str | None = None,
        min_score: float = 0.5,
        iou: float = 0.45,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        self.model = _require(Path(model))
        self.classes = dict(COCO_CLASSES if classes is None else classes)
        self.min_score = min_score
        self.iou = iou
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.model), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped exception classes
            raise ModelError(f"cannot load model {self.model}: {exc}") from exc
        inp = self._session.get_inputs()[0]
        self._input = str(inp.name)
        shape = inp.shape
        self.size = int(shape[2]) if isinstance(shape[2], int) else 640
        if all_as is not None:
            out_shape = self._session.get_outputs()[0].shape
            n = int(out_shape[1]) - 4 if isinstance(out_shape[1], int) else 1
            self.classes = dict.fromkeys(range(max(1, n)), all_as)

    def detect(self, image: np.ndarray) -> list[Detection]:
        img = _bgr(image)
        canvas, r, dx, dy = _letterbox(img, self.size)
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 255.0, swapRB=True)
        (out,) = self._session.run(None, {self._input: blob})
        preds = np.asarray(out)[0].T  # anchors x (4 + classes)
        scores = preds[:, 4:]
        cls = scores.argmax(axis=1)
        conf = scores[np.arange(len(cls)), cls]
        keep = conf >= self.min_score
        keep &= np.isin(cls, list(self.classes))
        if not keep.any():
            return []
        cx, cy, bw, bh = preds[keep, 0], preds[keep, 1], preds[keep, 2], preds[keep, 3]
        conf, cls = conf[keep], cls[keep]
        x0 = (cx - bw / 2 - dx) / r
        y0 = (cy - bh / 2 - dy) / r
        boxes_xywh = np.stack([x0, y0, bw / r, bh / r], axis=1)
        idx = cv2.dnn.NMSBoxesBatched(
            boxes_xywh.tolist(), conf.tolist(), cls.tolist(), self.min_score, self.iou
        )
        h, w = img.shape[:2]
        out_d: list[Detection] = []
        for i in np.asarray(idx, dtype=np.int64).reshape(-1):
            bx, by, bw_, bh_ = boxes_xywh[i]
            box = (
                float(np.clip(bx, 0, w)),
                float(np.clip(by, 0, h)),
                float(np.clip(bx + bw_, 0, w)),
                float(np.clip(by + bh_, 0, h)),
            )
            out_d.append(Detection(box, float(conf[i]), self.classes[int(cls[i])]))
        return out_d


class UltralyticsDetector:
    """A user's own model (`.pt` or `.onnx`) through ultralytics (the optional `yolo` extra).

    `names` maps the model's class *names* to ours (default: COCO person and vehicles); with
    `all_as` every class becomes that one (a plate model). Runs offline: YOLO_OFFLINE=1 and a
    private YOLO_CONFIG_DIR are set before ultralytics is imported.
    """

    def __init__(
        self,
        model: Path,
        *,
        names: Mapping[str, str] | None = None,
        all_as: str | None = None,
        min_score: float = 0.5,
        iou: float = 0.45,
        imgsz: int = 640,
        config_dir: Path | None = None,
    ) -> None:
        self.model = _require(Path(model))
        os.environ["YOLO_OFFLINE"] = "1"
        if config_dir is None and "YOLO_CONFIG_DIR" not in os.environ:
            config_dir = Path(tempfile.mkdtemp(prefix="vms-yolo-"))
        if config_dir is not None:
            os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
        try:
            # Imported here only: ultralytics pulls in torch, which the other backends never need.
            yolo_cls: Any = importlib.import_module("ultralytics").YOLO
        except ImportError as exc:
            raise ModelError(
                "the ultralytics backend needs the 'yolo' extra (pip install 'vms[yolo]')"
            ) from exc
        try:
            self._yolo: Any = yolo_cls(str(self.model), task="detect")
        except Exception as exc:  # ultralytics raises many unrelated exception types
            raise ModelError(f"cannot load model {self.model}: {exc}") from exc
        model_names: Mapping[int, str] = self._yolo.names
        mapping = dict(_COCO_NAMES if names is None else names)
        self.classes: dict[int, str] = {
            i: (all_as if all_as is not None else mapping[n])
            for i, n in model_names.items()
            if all_as is not None or n in mapping
        }
        self.min_score, self.iou, self.imgsz = min_score, iou, imgsz

    def detect(self, image: np.ndarray) -> list[Detection]:
        img = _bgr(image)
        results = self._yolo.predict(
            img,
            imgsz=self.imgsz,
            conf=self.min_score,
            iou=self.iou,
            classes=sorted(self.classes),
            device="cpu",
            verbose=False,
        )
        boxes = results[0].boxes
        xyxy = np.asarray(boxes.xyxy.cpu().numpy(), dtype=np.float64)
        conf = np.asarray(boxes.conf.cpu().numpy(), dtype=np.float64)
        cls = np.asarray(boxes.cls.cpu().numpy(), dtype=np.int64)
        return [
            Detection(
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(s), self.classes[int(c)]
            )
            for b, s, c in zip(xyxy, conf, cls, strict=True)
            if int(c) in self.classes
        ]


class PlatesFromVehicles:
    """Plates as the lower part of vehicle boxes, for when no plate model is configured.

    Plates sit low on the front and back of a vehicle; the lower 40% of its box covers them from
    the usual camera angles at the price of anonymising bumpers too.
    """

    LOWER_FRACTION = 0.4

    def __init__(self, inner: Detector, *, keep_others: bool = True) -> None:
        self.inner = inner
        self.keep_others = keep_others

    def detect(self, image: np.ndarray) -> list[Detection]:
        out: list[Detection] = []
        for d in self.inner.detect(image):
            if d.cls == "vehicle":
                x0, y0, x1, y1 = d.box
                top = y1 - (y1 - y0) * self.LOWER_FRACTION
                out.append(Detection((x0, top, x1, y1), d.score, "plate"))
            elif self.keep_others:
                out.append(d)
        return out


def build_detectors(
    config: DetectConfig, models_dir: Path | str | None, *, threads: int = 1
) -> list[Detector]:
    """The detectors a plan's `detect` section asks for, loaded from `models_dir`."""
    if models_dir is None:
        raise ModelError("the plan asks for detection but no models directory is configured")
    base = Path(models_dir)
    wanted = set(config.classes)
    models = config.models
    detectors: list[Detector] = []
    if "face" in wanted:
        detectors.append(YuNetFaceDetector(base / models.face, min_score=config.min_score))

    def objects(classes: Sequence[str]) -> Detector:
        keep = {i: c for i, c in COCO_CLASSES.items() if c in classes}
        if models.backend == "ultralytics":
            names = {n: c for n, c in _COCO_NAMES.items() if c in classes}
            return UltralyticsDetector(
                base / models.objects, names=names, min_score=config.min_score
            )
        return YoloOnnxDetector(
            base / models.objects, classes=keep, min_score=config.min_score, threads=threads
        )

    if "plate" in wanted and models.plate is not None:
        if models.backend == "ultralytics":
            detectors.append(
                UltralyticsDetector(base / models.plate, all_as="plate", min_score=config.min_score)
            )
        else:
            detectors.append(
                YoloOnnxDetector(
                    base / models.plate, all_as="plate", min_score=config.min_score, threads=threads
                )
            )
        wanted.discard("plate")
    if "person" in wanted and "plate" in wanted:
        detectors.append(PlatesFromVehicles(objects(["person", "vehicle"])))
    elif "person" in wanted:
        detectors.append(objects(["person"]))
    elif "plate" in wanted:
        detectors.append(PlatesFromVehicles(objects(["vehicle"]), keep_others=False))
    return detectors
