"""Masking files for people: anonymise a video or image with a plan, or draw a plan's preview."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from masking.anonymise import apply_regions
from masking.compile import compile_plan
from masking.geometry import horizon_segment, project_ground_segment, w_min
from masking.masker import Masker, MaskerStats
from masking.plan import FacadeStripZone, MaskPlan, calibration_homography, parse_plan

__all__ = [
    "IMAGE_SUFFIXES",
    "MaskToolError",
    "is_image",
    "load_plan",
    "mask_image",
    "mask_video",
    "preview_file",
    "render_preview",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
Progress = Callable[[int, int | None], None]


class MaskToolError(RuntimeError):
    """An input or output file that cannot be used (one line, for people)."""


def _why(exc: BaseException) -> str:
    """FFmpeg's reason without the errno and file name it repeats."""
    return str(getattr(exc, "strerror", None) or exc)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_plan(path: Path) -> MaskPlan:
    """Read and validate a plan file (PlanError on a bad plan, MaskToolError if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MaskToolError(f"cannot read plan {path}: {exc}") from exc
    return parse_plan(text)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None:
        raise MaskToolError(f"cannot read image {path}")
    return image


def _write_image(path: Path, image: np.ndarray) -> None:
    if not is_image(path):
        raise MaskToolError(f"output {path} must be an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not cv2.imwrite(str(path), image):
        raise MaskToolError(f"cannot write image {path}")


def mask_image(
    src: Path,
    dst: Path,
    plan: MaskPlan | Mapping[str, Any] | str | None,
    *,
    models_dir: Path | str | None = None,
) -> MaskerStats:
    """Anonymise one image file into another."""
    masker = Masker(plan, models_dir=models_dir)
    image = _read_image(src)
    _write_image(dst, masker.apply_bgr(image))
    return masker.stats


def mask_video(
    src: Path,
    dst: Path,
    plan: MaskPlan | Mapping[str, Any] | str | None,
    *,
    models_dir: Path | str | None = None,
    detect_every: int = 1,
    crf: int = 23,
    preset: str = "veryfast",
    progress: Progress | None = None,
) -> MaskerStats:
    """Anonymise a video file into MP4/H.264 (audio is dropped; timestamps are kept)."""
    import av

    masker = Masker(plan, models_dir=models_dir, detect_every=detect_every)
    try:
        inp = av.open(str(src))
    except (av.FFmpegError, OSError) as exc:
        raise MaskToolError(f"cannot open video {src}: {_why(exc)}") from exc
    with inp:
        if not inp.streams.video:
            raise MaskToolError(f"no video stream in {src}")
        ist = inp.streams.video[0]
        ist.thread_type = "AUTO"
        total = ist.frames or None
        rate = ist.average_rate or Fraction(25)
        # Written beside the target and renamed when complete: a failed run leaves no half file.
        part = dst.with_name(f".{dst.name}.part")
        try:
            out = av.open(str(part), "w", format="mp4")
        except (av.FFmpegError, OSError) as exc:
            raise MaskToolError(f"cannot write {dst}: {_why(exc)}") from exc
        done = 0
        try:
            with out:
                ost = out.add_stream("libx264", rate=rate)
                # 4:2:0 needs even dimensions; the encoder's reformatter scales odd ones.
                ost.width = ist.codec_context.width & ~1
                ost.height = ist.codec_context.height & ~1
                ost.pix_fmt = "yuv420p"
                ost.codec_context.time_base = ist.time_base or Fraction(1, int(rate) or 25)
                ost.options = {"crf": str(crf), "preset": preset}
                try:
                    for frame in inp.decode(ist):
                        masked = masker.apply_yuv420(frame)
                        # Otherwise the encoder copies the camera's I/P decisions.
                        masked.pict_type = av.video.frame.PictureType.NONE
                        if masked.pts is None:
                            masked.pts = done
                            masked.time_base = ost.codec_context.time_base
                        out.mux(ost.encode(masked))
                        done += 1
                        if progress is not None:
                            progress(done, total)
                    out.mux(ost.encode(None))
                except av.FFmpegError as exc:
                    raise MaskToolError(f"cannot decode {src}: {_why(exc)}") from exc
            if done == 0:
                raise MaskToolError(f"no frames decoded from {src}")
            part.replace(dst)
        finally:
            part.unlink(missing_ok=True)
    return masker.stats


def first_frame(src: Path) -> np.ndarray:
    """The first frame of a video (or the image itself) as BGR."""
    if is_image(src):
        return _read_image(src)
    import av

    try:
        with av.open(str(src)) as inp:
            for frame in inp.decode(video=0):
                return np.asarray(frame.to_ndarray(format="bgr24"))
    except (av.FFmpegError, OSError) as exc:
        raise MaskToolError(f"cannot read video {src}: {_why(exc)}") from exc
    raise MaskToolError(f"no frames in {src}")


def preview_file(
    src: Path, dst: Path, plan: MaskPlan | Mapping[str, Any] | str | None, *, masked: bool = True
) -> None:
    """Write the preview of a plan over the image (or the video's first frame)."""
    _write_image(dst, render_preview(first_frame(src), plan, masked=masked))


_ANON_TINT = np.array([40, 40, 230], dtype=np.float32)  # BGR red
_KEPT = (60, 200, 60)
_FACADE = (0, 220, 255)
_CALIB = (255, 200, 0)
_HORIZON = (230, 60, 230)


def render_preview(
    frame: np.ndarray, plan: MaskPlan | Mapping[str, Any] | str | None, *, masked: bool = True
) -> np.ndarray:
    """A BGR picture of what a plan does on this frame.

    Red tint: anonymised by the zones; green outline: kept area; yellow: facade lines; cyan:
    numbered calibration points; magenta: the ground's horizon. With `masked` (the default) the
    picture itself is anonymised by the static zones, so serving it shows nothing the camera's
    viewers could not see; detections are not run.
    """
    p = parse_plan(plan)
    h, w = frame.shape[:2]
    cp = compile_plan(p, w, h)
    out = frame.copy()
    if masked and cp.luma:
        apply_regions(out, cp.luma, p.method, cp.strength_px, (0, 0, 0))
    anon = cp.anon_mask > 0
    if anon.any():
        tinted = out[anon].astype(np.float32) * 0.6 + _ANON_TINT * 0.4
        out[anon] = tinted.astype(np.uint8)
    thick = max(1, round(min(w, h) / 360))
    contours, _ = cv2.findContours(
        np.where(anon, 0, 255).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(out, contours, -1, _KEPT, thick, cv2.LINE_AA)
    if p.calibration is not None:
        hn = calibration_homography(p.calibration)
        ground = np.array([c.ground for c in p.calibration], dtype=np.float64)
        wmin = w_min(hn, ground)
        for zone in p.zones:
            if isinstance(zone, FacadeStripZone):
                for a, b in itertools.pairwise(np.array(zone.facade)):
                    seg = project_ground_segment(hn, a, b, wmin, w, h)
                    if seg is not None:
                        _line(out, seg[0], seg[1], _FACADE, thick * 2)
        horizon = horizon_segment(hn, w, h)
        if horizon is not None:
            _line(out, horizon[0], horizon[1], _HORIZON, thick, dashed=True)
        for i, c in enumerate(p.calibration):
            centre = (round(c.image[0] * w - 0.5), round(c.image[1] * h - 0.5))
            cv2.circle(out, centre, thick * 4, _CALIB, thick, cv2.LINE_AA)
            _label(out, str(i), (centre[0] + thick * 5, centre[1] - thick * 5), _CALIB, thick)
    _label(
        out,
        f"{p.method}, default {p.default}, {len(p.zones)} zone(s)",
        (8, 8),
        (255, 255, 255),
        thick,
    )
    return out


def _line(
    img: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    color: tuple[int, int, int],
    thick: int,
    *,
    dashed: bool = False,
) -> None:
    h, w = img.shape[:2]
    # cv2 drawing wants small ints: clip to a frame-sized margin first.
    ok, p0, p1 = cv2.clipLine(
        (-w, -h, 3 * w, 3 * h),
        (int(np.clip(a[0], -1e6, 1e6)) + w, int(np.clip(a[1], -1e6, 1e6)) + h),
        (int(np.clip(b[0], -1e6, 1e6)) + w, int(np.clip(b[1], -1e6, 1e6)) + h),
    )
    if not ok:
        return
    q0 = np.array([p0[0] - w, p0[1] - h], dtype=np.float64)
    q1 = np.array([p1[0] - w, p1[1] - h], dtype=np.float64)
    if not dashed:
        cv2.line(img, _pt(q0), _pt(q1), color, thick, cv2.LINE_AA)
        return
    length = float(np.linalg.norm(q1 - q0))
    dash = max(6.0, 6.0 * thick)
    for t in np.arange(0.0, length, 2 * dash):
        s0 = q0 + (q1 - q0) * (t / length)
        s1 = q0 + (q1 - q0) * (min(length, t + dash) / length)
        cv2.line(img, _pt(s0), _pt(s1), color, thick, cv2.LINE_AA)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return round(float(p[0])), round(float(p[1]))


def _label(
    img: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int], thick: int
) -> None:
    scale = 0.45 * thick
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    cv2.rectangle(img, (x - 2, y - 2), (x + tw + 2, y + th + base + 2), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y + th), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
