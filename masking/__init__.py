"""Privacy masking: turn a camera's mask plan into pixels that cannot be recovered.

Pure frame work on numpy/OpenCV/onnxruntime; imports nothing else of the project.

    plan = parse_plan(json_text)              # PlanError lists {field, msg}
    masker = Masker(plan, models_dir=models)  # one per camera
    masker.apply_yuv420(frame)                # PyAV VideoFrame or (Y, U, V) planes
    masker.apply_bgr(image)
    masker.stats.fail_closed                  # frames blanked because something failed
"""

from masking.compile import CompiledPlan, compile_plan
from masking.detect import (
    Detection,
    Detector,
    ModelError,
    PlatesFromVehicles,
    UltralyticsDetector,
    YoloOnnxDetector,
    YuNetFaceDetector,
    build_detectors,
)
from masking.masker import Masker, MaskerStats, MaskingError, mask_plan
from masking.plan import (
    CalibrationPoint,
    DetectConfig,
    FacadeStripZone,
    MaskPlan,
    PlanError,
    PolygonZone,
    parse_plan,
    plan_hash,
)

__all__ = [
    "CalibrationPoint",
    "CompiledPlan",
    "DetectConfig",
    "Detection",
    "Detector",
    "FacadeStripZone",
    "MaskPlan",
    "Masker",
    "MaskerStats",
    "MaskingError",
    "ModelError",
    "PlanError",
    "PlatesFromVehicles",
    "PolygonZone",
    "UltralyticsDetector",
    "YoloOnnxDetector",
    "YuNetFaceDetector",
    "build_detectors",
    "compile_plan",
    "mask_plan",
    "parse_plan",
    "plan_hash",
]
