"""The per-camera entry point: `Masker(plan, ...)` applied to every frame, failing closed.

Over 500 lines on purpose: the BGR, YUV-plane and whole-frame paths share one fail-closed order
(detectors, zones, cover-all on any error), which is checked by reading them side by side.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import cv2
import numpy as np

from masking.anonymise import anonymise_box, anonymise_plane_into, apply_regions
from masking.compile import Box, CompiledPlan, compile_plan
from masking.detect import Detection, Detector, build_detectors
from masking.plan import DetectConfig, MaskPlan, parse_plan, plan_hash

if TYPE_CHECKING:
    import av

__all__ = ["Masker", "MaskerStats", "MaskingError", "YUVPlanes"]

logger = logging.getLogger(__name__)

YUVPlanes = tuple[np.ndarray, np.ndarray, np.ndarray]
# Makes the detector input: a BGR image of a frame area, scaled to a (width, height).
_Crop = Callable[[Box, tuple[int, int]], np.ndarray]

_YUV420 = frozenset({"yuv420p", "yuvj420p"})
# Extra margin around detections, as fractions of the box (left, top, right, bottom): a face box
# from YuNet stops at the hairline and ears; people move between detection runs.
_PAD: dict[str, tuple[float, float, float, float]] = {
    "face": (0.25, 0.45, 0.25, 0.2),
    "person": (0.08, 0.08, 0.08, 0.05),
    "plate": (0.1, 0.1, 0.1, 0.1),
}
# Detected boxes get at least this coarse a treatment, relative to the box's smaller side: a
# large face under a fixed-size blur can still be recognised (and detected).
_MIN_BLOCKS_ACROSS = {"pixelate": 5, "blur": 3}
# A held box grows by this fraction of its size per side for every frame since its detection:
# the person keeps moving while the box is held (at 10 fps a walker moves ~1/4 of a face width).
_HOLD_GROWTH = 0.15
# Detections are looked for around the kept area too (this fraction of its size, and of the
# frame): a face cut in half by the search edge is not found, yet its kept half would show.
_CROP_MARGIN = 0.25
_CROP_MARGIN_FRAME = 0.1
_LOG_EVERY = 1000
# `mask_frame` anonymises whole planes into a frame of its own when the plan's regions cover at
# least this share of the picture (below it, copying the frame and masking regions is cheaper).
_WHOLE_PLANE_FROM = 0.5


class MaskingError(RuntimeError):
    """A frame could neither be masked nor blanked: the caller must drop it."""


@dataclass
class MaskerStats:
    """Counters for the pipeline to export (e.g. to Prometheus)."""

    frames: int = 0
    fail_closed: int = 0  # frames fully anonymised because something failed
    compile_failures: int = 0
    detector_failures: int = 0
    detector_runs: int = 0
    detections: int = 0
    detect_seconds: float = 0.0
    last_error: str | None = None


@dataclass
class _Track:
    box: Box
    cls: str
    seen: int  # frame index of the detection
    expires: int  # last frame index on which the box is still applied
    vx: float = 0.0  # estimated motion, pixels per frame (from the previous detection)
    vy: float = 0.0

    def at(self, index: int, width: int, height: int) -> Box:
        """The box extrapolated to a later frame: moved by its velocity, grown for the doubt."""
        age = index - self.seen
        x0, y0, x1, y1 = self.box
        if age <= 0:
            return self.box
        dx, dy = round(self.vx * age), round(self.vy * age)
        gx = math.ceil((x1 - x0) * _HOLD_GROWTH * age)
        gy = math.ceil((y1 - y0) * _HOLD_GROWTH * age)
        return (
            max(0, x0 + dx - gx),
            max(0, y0 + dy - gy),
            min(width, x1 + dx + gx),
            min(height, y1 + dy + gy),
        )


class Masker:
    """Applies one camera's mask plan to frames; never lets an unmasked frame through.

    `apply_bgr` and `apply_yuv420` change the given pixels in place and return the masked frame.
    On any failure (plan compile, detector, masking) the frame is fully anonymised instead and
    `stats.fail_closed` counts it. One Masker serves one camera from one thread.

    `detect_every=k` runs the detectors on every k-th frame; boxes are held for
    `hold_frames + k - 1` frames after their detection. `detect_max_side` bounds the longer side
    of the image the detectors see (they run on a downscaled copy of the searched area).
    `detectors` replaces the plan's detectors (which are otherwise loaded from `models_dir`).
    """

    def __init__(
        self,
        plan: MaskPlan | Mapping[str, Any] | str | None,
        *,
        models_dir: Path | str | None = None,
        detect_every: int = 1,
        detect_max_side: int = 960,
        threads: int = 1,
        detectors: Sequence[Detector] | None = None,
    ) -> None:
        self.plan = parse_plan(plan)
        self.plan_hash = plan_hash(self.plan)
        if detect_every < 1:
            raise ValueError("detect_every must be >= 1")
        self.detect_every = detect_every
        self.detect_max_side = detect_max_side
        self.stats = MaskerStats()
        self._detect: DetectConfig | None = self.plan.detect
        if detectors is not None:
            self.detectors: list[Detector] = list(detectors)
            if self._detect is None and self.detectors:
                self._detect = DetectConfig(classes=["face", "person", "plate"])
        elif self.plan.detect is not None:
            self.detectors = build_detectors(self.plan.detect, models_dir, threads=threads)
        else:
            self.detectors = []
        self._compiled: CompiledPlan | None = None
        self._compile_error: tuple[tuple[int, int], Exception] | None = None
        self._tracks: list[_Track] = []
        self._index = 0
        self._pool = _FramePool()

    # -- public -----------------------------------------------------------------------------

    def compiled(self, width: int, height: int) -> CompiledPlan:
        """The compiled plan for a frame size (cached; raises if the plan cannot compile)."""
        cp = self._compiled
        if cp is not None and cp.width == width and cp.height == height:
            return cp
        if self._compile_error is not None and self._compile_error[0] == (width, height):
            raise self._compile_error[1]
        try:
            cp = compile_plan(self.plan, width, height)
        except Exception as exc:
            self.stats.compile_failures += 1
            self._compile_error = ((width, height), exc)
            raise
        self._compiled = cp
        self._tracks.clear()
        return cp

    def reset(self) -> None:
        """Forget held detections (call when the stream restarts)."""
        self._tracks.clear()
        self._index = 0

    def apply_bgr(self, image: np.ndarray) -> np.ndarray:
        """Mask a BGR uint8 image in place; returns it."""
        self.stats.frames += 1
        try:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image.shape}")
            height, width = image.shape[:2]
            cp = self.compiled(width, height)
            boxes = self._boxes(cp, lambda box, size: _crop_resize_bgr(image, box, size))
            method, strength = self.plan.method, cp.strength_px
            if cp.luma:
                apply_regions(image, cp.luma, method, strength, (0, 0, 0))
            for box, s in boxes:
                anonymise_box(image, box, method, s, (0, 0, 0))
        except Exception as exc:
            self._fail_closed(exc)
            try:
                image[...] = 0
            except Exception as exc2:
                raise MaskingError("cannot blank the frame after a masking failure") from exc2
        finally:
            self._index += 1
        return image

    @overload
    def apply_yuv420(self, frame: av.VideoFrame) -> av.VideoFrame: ...
    @overload
    def apply_yuv420(self, frame: YUVPlanes) -> YUVPlanes: ...
    def apply_yuv420(self, frame: av.VideoFrame | YUVPlanes) -> av.VideoFrame | YUVPlanes:
        """Mask a 4:2:0 frame: a PyAV VideoFrame or a (Y, U, V) tuple of numpy planes.

        numpy planes are changed in place. A VideoFrame is made writable first (a decoder shares
        its buffers with its reference pictures: writing into them corrupts the frames decoded
        after it), then changed in place; frames in other pixel formats are converted to
        yuv420p and the converted frame is returned.
        """
        self.stats.frames += 1
        try:
            out = frame
            if isinstance(frame, tuple):
                y, u, v = frame
                full_range = False
            else:
                out = _writable_yuv420(frame)
                y, u, v = _plane_views(out)
                full_range = out.format.name == "yuvj420p" or int(out.color_range) == 2
            black = 0 if full_range else 16
            try:
                self._mask_yuv(y, u, v, black)
            except Exception as exc:
                self._fail_closed(exc)
                y[...] = black
                u[...] = 128
                v[...] = 128
            return out
        except Exception as exc:
            # Not even the planes could be reached: blank every byte we can, or refuse.
            self._fail_closed(exc)
            try:
                if isinstance(frame, tuple):
                    for p in frame:
                        p[...] = 0
                else:
                    for plane in frame.planes:
                        np.frombuffer(memoryview(plane), np.uint8)[...] = 0
            except Exception as exc2:
                raise MaskingError("cannot blank the frame after a masking failure") from exc2
            return frame
        finally:
            self._index += 1

    def mask_frame(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The masked picture of a decoded frame; `frame` itself is never written.

        Where the plan's zones anonymise most of the picture, the result is written straight
        into one of the masker's own frames (a pool of two per frame size): every pixel is read
        once and written once, instead of copying the decoder's frame (it shares its buffers
        with reference pictures) and then masking the copy in place. That frame is reused: it
        stays valid until the call after next, so use it (encode it, convert it) and let it go.
        Otherwise, and for frames that are not 4:2:0, this is `apply_yuv420(frame)`. Failing
        closed works the same way: a frame that cannot be masked comes back fully anonymised.
        """
        if frame.format.name not in _YUV420:
            return self.apply_yuv420(frame)
        try:
            cp = self.compiled(frame.width, frame.height)
            if cp.region_fraction < _WHOLE_PLANE_FROM:
                return self.apply_yuv420(frame)
            out, dst = self._pool.take(frame)
        except Exception:
            return self.apply_yuv420(frame)  # fails closed there
        self.stats.frames += 1
        full_range = frame.format.name == "yuvj420p" or int(frame.color_range) == 2
        black = 0 if full_range else 16
        try:
            out.color_range = frame.color_range
            out.colorspace = frame.colorspace
            self._mask_into(_plane_views(frame), dst, cp, black)
        except Exception as exc:
            self._fail_closed(exc)
            try:
                dst[0][...] = black
                dst[1][...] = 128
                dst[2][...] = 128
            except Exception as exc2:
                raise MaskingError("cannot blank the frame after a masking failure") from exc2
        finally:
            self._index += 1
        return out

    # -- internals --------------------------------------------------------------------------

    def _mask_yuv(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, black: int) -> None:
        height, width = y.shape
        if u.shape != ((height + 1) // 2, (width + 1) // 2) or v.shape != u.shape:
            raise ValueError(f"not 4:2:0 planes: {y.shape}, {u.shape}, {v.shape}")
        cp = self.compiled(width, height)
        boxes = self._boxes(cp, lambda box, size: _crop_resize_yuv(y, u, v, box, size))
        method, strength = self.plan.method, cp.strength_px
        if cp.luma:
            apply_regions(y, cp.luma, method, strength, black)
            apply_regions(u, cp.chroma, method, strength // 2, 128)
            apply_regions(v, cp.chroma, method, strength // 2, 128)
        for (x0, y0, x1, y1), s in boxes:
            anonymise_box(y, (x0, y0, x1, y1), method, s, black)
            cbox = (x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2)
            anonymise_box(u, cbox, method, max(1, s // 2), 128)
            anonymise_box(v, cbox, method, max(1, s // 2), 128)

    def _mask_into(self, src: YUVPlanes, dst: YUVPlanes, cp: CompiledPlan, black: int) -> None:
        """Like `_mask_yuv`, from the planes `src` into the planes `dst` (whole planes)."""
        y, u, v = src
        height, width = y.shape
        if u.shape != ((height + 1) // 2, (width + 1) // 2) or v.shape != u.shape:
            raise ValueError(f"not 4:2:0 planes: {y.shape}, {u.shape}, {v.shape}")
        if dst[0].shape != y.shape or dst[1].shape != u.shape:
            raise ValueError(f"output planes {dst[0].shape} do not fit {y.shape}")
        boxes = self._boxes(cp, lambda box, size: _crop_resize_yuv(y, u, v, box, size))
        method, strength = self.plan.method, cp.strength_px
        dy, du, dv = dst
        anonymise_plane_into(y, dy, method, strength, black, cp.luma_keep)
        anonymise_plane_into(u, du, method, strength // 2, 128, cp.chroma_keep)
        anonymise_plane_into(v, dv, method, strength // 2, 128, cp.chroma_keep)
        for (x0, y0, x1, y1), s in boxes:
            anonymise_box(dy, (x0, y0, x1, y1), method, s, black)
            cbox = (x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2)
            anonymise_box(du, cbox, method, max(1, s // 2), 128)
            anonymise_box(dv, cbox, method, max(1, s // 2), 128)

    def _fail_closed(self, exc: BaseException) -> None:
        self.stats.fail_closed += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if self.stats.fail_closed == 1 or self.stats.fail_closed % _LOG_EVERY == 0:
            logger.warning(
                "masking failed, frame fully anonymised (%d so far): %s",
                self.stats.fail_closed,
                self.stats.last_error,
                exc_info=exc,
            )

    def _search_box(self, cp: CompiledPlan) -> Box | None:
        """Where detectors look: the kept area (plus margin), or everything."""
        cfg = self._detect
        if cfg is None or cfg.in_ == "everywhere":
            return (0, 0, cp.width, cp.height)
        if cp.kept_box is None:
            return None  # nothing is visible, so nothing to find
        x0, y0, x1, y1 = cp.kept_box
        mx = math.ceil(max((x1 - x0) * _CROP_MARGIN, cp.width * _CROP_MARGIN_FRAME))
        my = math.ceil(max((y1 - y0) * _CROP_MARGIN, cp.height * _CROP_MARGIN_FRAME))
        return (
            max(0, x0 - mx) & ~1,
            max(0, y0 - my) & ~1,
            min(cp.width, x1 + mx),
            min(cp.height, y1 + my),
        )

    def _boxes(self, cp: CompiledPlan, crop: _Crop) -> list[tuple[Box, int]]:
        """Detection boxes to anonymise on this frame, with their per-box strength."""
        cfg = self._detect
        if cfg is None or not self.detectors:
            return []
        if self._index % self.detect_every == 0:
            search = self._search_box(cp)
            if search is not None:
                self._run_detectors(cp, search, crop, cfg)
        self._tracks = [t for t in self._tracks if t.expires >= self._index]
        out: list[tuple[Box, int]] = []
        for t in self._tracks:
            box = t.at(self._index, cp.width, cp.height)
            x0, y0, x1, y1 = box
            if x1 <= x0 or y1 <= y0:
                continue  # extrapolated out of the frame
            if cfg.in_ == "kept_area" and cp.anon_mask[y0:y1, x0:x1].all():
                continue  # entirely inside already anonymised area
            out.append((box, self._box_strength(cp, box)))
        return out

    def _run_detectors(self, cp: CompiledPlan, search: Box, crop: _Crop, cfg: DetectConfig) -> None:
        sx0, sy0, sx1, sy1 = search
        sw, sh = sx1 - sx0, sy1 - sy0
        scale = min(1.0, self.detect_max_side / max(sw, sh))
        size = (max(2, round(sw * scale) & ~1), max(2, round(sh * scale) & ~1))
        image = crop(search, size)
        fx, fy = sw / size[0], sh / size[1]
        t0 = time.perf_counter()
        found: list[Detection] = []
        try:
            for det in self.detectors:
                found.extend(det.detect(image))
        except Exception:
            self.stats.detector_failures += 1
            raise
        finally:
            self.stats.detect_seconds += time.perf_counter() - t0
            self.stats.detector_runs += 1
        expires = self._index + cfg.hold_frames + self.detect_every - 1
        previous = [t for t in self._tracks if t.seen < self._index]
        for d in found:
            if d.cls == "vehicle" or d.score < cfg.min_score:
                continue
            x0, y0, x1, y1 = d.box
            bw, bh = (x1 - x0) * fx, (y1 - y0) * fy
            pl, pt, pr, pb = _PAD.get(d.cls, (0.1, 0.1, 0.1, 0.1))
            box = (
                max(0, math.floor(sx0 + x0 * fx - pl * bw)),
                max(0, math.floor(sy0 + y0 * fy - pt * bh)),
                min(cp.width, math.ceil(sx0 + x1 * fx + pr * bw)),
                min(cp.height, math.ceil(sy0 + y1 * fy + pb * bh)),
            )
            if box[2] > box[0] and box[3] > box[1]:
                track = _Track(box, d.cls, self._index, expires)
                _estimate_motion(track, previous)
                self._tracks.append(track)
                self.stats.detections += 1

    def _box_strength(self, cp: CompiledPlan, box: Box) -> int:
        method = self.plan.method
        if method == "fill":
            return 0
        side = min(box[2] - box[0], box[3] - box[1])
        s = max(cp.strength_px, math.ceil(side / _MIN_BLOCKS_ACROSS[method]))
        return s + s % 2


def _estimate_motion(track: _Track, previous: list[_Track]) -> None:
    """Velocity from the nearest earlier detection of the same class, if it is close enough."""
    x0, y0, x1, y1 = track.box
    cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    best: tuple[float, _Track] | None = None
    for t in previous:
        if t.cls != track.cls:
            continue
        tx0, ty0, tx1, ty1 = t.box
        dist = math.hypot((tx0 + tx1) / 2 - cx, (ty0 + ty1) / 2 - cy)
        if dist <= 1.5 * size * (track.seen - t.seen) and (best is None or dist < best[0]):
            best = (dist, t)
    if best is not None:
        t = best[1]
        frames = track.seen - t.seen
        track.vx = (cx - (t.box[0] + t.box[2]) / 2) / frames
        track.vy = (cy - (t.box[1] + t.box[3]) / 2) / frames


class _FramePool:
    """Output frames for `Masker.mask_frame`, reused round-robin, with their plane views.

    Frames are reference-counted: if a consumer still holds one when its turn comes again,
    `make_writable` gives it fresh buffers (the consumer keeps the old ones) and the views are
    rebuilt, so a held frame is never written into.
    """

    def __init__(self, size: int = 2) -> None:
        self._size = size
        self._key: tuple[int, int, str] | None = None
        self._frames: list[tuple[av.VideoFrame, YUVPlanes, int]] = []
        self._next = 0

    def take(self, like: av.VideoFrame) -> tuple[av.VideoFrame, YUVPlanes]:
        import av

        key = (like.width, like.height, like.format.name)
        if key != self._key:
            self._frames = []
            for _ in range(self._size):
                frame = av.VideoFrame(like.width, like.height, like.format.name)
                self._frames.append((frame, _plane_views(frame), frame.planes[0].buffer_ptr))
            self._key, self._next = key, 0
        i = self._next
        self._next = (i + 1) % self._size
        frame, views, ptr = self._frames[i]
        frame.make_writable()
        now = frame.planes[0].buffer_ptr
        if now != ptr:
            views = _plane_views(frame)
            self._frames[i] = (frame, views, now)
        return frame, views


def _writable_yuv420(frame: av.VideoFrame) -> av.VideoFrame:
    if frame.format.name not in _YUV420:
        return frame.reformat(format="yuv420p")
    frame.make_writable()
    return frame


def _plane_views(frame: av.VideoFrame) -> YUVPlanes:
    views = []
    for plane in frame.planes[:3]:
        buf = np.frombuffer(memoryview(plane), np.uint8, count=plane.height * plane.line_size)
        views.append(buf.reshape(plane.height, plane.line_size)[:, : plane.width])
    return views[0], views[1], views[2]


def _crop_resize_bgr(image: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    view = image[y0:y1, x0:x1]
    if (x1 - x0, y1 - y0) == size:
        return view
    return cv2.resize(view, size, interpolation=cv2.INTER_AREA)


def _crop_resize_yuv(
    y: np.ndarray, u: np.ndarray, v: np.ndarray, box: Box, size: tuple[int, int]
) -> np.ndarray:
    """A BGR image of a (downscaled) crop, built from the planes without a full-frame convert."""
    x0, y0, x1, y1 = box
    dw, dh = size
    i420 = np.empty((dh * 3 // 2, dw), dtype=np.uint8)
    flat = i420.reshape(-1)
    cw, ch = dw // 2, dh // 2
    yv = flat[: dw * dh].reshape(dh, dw)
    uv = flat[dw * dh : dw * dh + cw * ch].reshape(ch, cw)
    vv = flat[dw * dh + cw * ch :].reshape(ch, cw)
    interp = cv2.INTER_AREA if dw < x1 - x0 else cv2.INTER_LINEAR
    cv2.resize(y[y0:y1, x0:x1], (dw, dh), dst=yv, interpolation=interp)
    cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2
    cv2.resize(u[cy0:cy1, cx0:cx1], (cw, ch), dst=uv, interpolation=interp)
    cv2.resize(v[cy0:cy1, cx0:cx1], (cw, ch), dst=vv, interpolation=interp)
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def mask_plan(plan: MaskPlan, frame_size: tuple[int, int]) -> CompiledPlan:
    """The compiled masks of a plan for a (width, height) frame size."""
    return compile_plan(plan, frame_size[0], frame_size[1])
