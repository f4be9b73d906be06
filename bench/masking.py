"""Masking throughput against plain decode + encode, on one pinned core.

    .venv/bin/python bench/masking.py            # writes bench/results/masking.md

Clips are made in a temp dir by scaling the sample footage to 1080p and 720p. Every case runs
decode -> (mask) -> x264 encode on the same clip, interleaved with the baseline in each round,
and is reported as a ratio to the baseline of the same round (run-to-run noise here is 10-15%).
Frame rates are from this process's CPU time, so other work on the machine does not count.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import onnxruntime

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from masking import Detection, Detector, Masker, parse_plan  # noqa: E402
from masking.compile import compile_plan  # noqa: E402

SAMPLE = REPO / ".." / "shared" / "sample_media"
SOURCES = {
    "walk": SAMPLE / "video" / "one-by-one-person-detection.mp4",
    "street": SAMPLE / "video" / "market_street_1906_awbc_sample.mp4",
}
SIZES = {"1080p": (1920, 1080), "720p": (1280, 720)}
PRESET = "ultrafast"

# The Gothenburg case on the sample scene: everything anonymised except a 2 m strip of floor
# along the wall (about 9.6% of the frame, like the reference measurements in TESTING.md). The
# calibration is a plausible one for the walking video's floor.
CALIBRATION = [
    {"image": [0.0, 0.56], "ground": [0.0, 0.0]},
    {"image": [1.0, 0.53], "ground": [14.0, 0.0]},
    {"image": [1.0, 1.0], "ground": [14.0, 10.0]},
    {"image": [0.0, 1.0], "ground": [0.0, 9.0]},
]


def facade_plan(method: str, detect: list[str] | None = None) -> dict[str, object]:
    plan: dict[str, object] = {
        "version": 1,
        "method": method,
        "default": "anonymise",
        "calibration": CALIBRATION,
        "zones": [
            {
                "type": "facade_strip",
                "action": "keep",
                "facade": [[0.0, 0.0], [14.0, 0.0]],
                "width_m": 2.0,
            }
        ],
    }
    if detect:
        plan["detect"] = {"classes": detect, "in": "kept_area"}
    return plan


def make_clip(src: Path, dst: Path, size: tuple[int, int], frames: int) -> None:
    """Scale the source to `size` and encode it as a camera would (no B-frames, GOP 2 s)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        rate = ist.average_rate or Fraction(25)
        ost = out.add_stream("libx264", rate=rate)
        ost.width, ost.height, ost.pix_fmt = size[0], size[1], "yuv420p"
        ost.options = {"preset": "veryfast", "crf": "20", "bf": "0", "g": str(int(rate * 2))}
        for n, frame in enumerate(inp.decode(ist)):
            if n == frames:
                break
            scaled = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            scaled.pts, scaled.time_base = n, Fraction(1) / rate
            out.mux(ost.encode(scaled))
        out.mux(ost.encode(None))


Step = Callable[[av.VideoFrame], av.VideoFrame]


@dataclass
class Result:
    fps: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    mbps: list[float] = field(default_factory=list)
    detect_ms: list[float] = field(default_factory=list)


def run(clip: Path, out_path: Path, step: Step | None) -> tuple[float, float, int]:
    """Decode -> step -> encode the whole clip; returns (fps by CPU time, Mbit/s out, frames)."""
    with av.open(str(clip)) as inp, av.open(str(out_path), "w", format="mp4") as out:
        ist = inp.streams.video[0]
        ist.codec_context.thread_count = 1
        ist.thread_type = "SLICE"
        rate = ist.average_rate or Fraction(25)
        ost = out.add_stream("libx264", rate=rate)
        ost.width, ost.height, ost.pix_fmt = ist.width, ist.height, "yuv420p"
        ost.codec_context.time_base = ist.time_base or Fraction(1) / rate
        ost.codec_context.thread_count = 1
        ost.options = {"preset": PRESET, "threads": "1"}
        n = 0
        t0 = time.process_time()
        for frame in inp.decode(ist):
            pts, tb = frame.pts, frame.time_base
            if step is not None:
                frame = step(frame)
                frame.pts, frame.time_base = pts, tb
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(ost.encode(frame))
            n += 1
        out.mux(ost.encode(None))
        cpu = time.process_time() - t0
    seconds = n / float(rate)
    return n / cpu, out_path.stat().st_size * 8 / seconds / 1e6, n


def yuv_step(masker: Masker) -> Step:
    def step(frame: av.VideoFrame) -> av.VideoFrame:
        return masker.apply_yuv420(frame)

    return step


def bgr_step(masker: Masker) -> Step:
    def step(frame: av.VideoFrame) -> av.VideoFrame:
        img: np.ndarray[Any, np.dtype[np.uint8]] = np.asarray(
            frame.to_ndarray(format="bgr24"), dtype=np.uint8
        )
        masker.apply_bgr(img)
        out: av.VideoFrame = av.VideoFrame.from_ndarray(img, format="bgr24")
        return out

    return step


class CpuTimed:
    """Wraps a detector to count its CPU time (wall time would include other load)."""

    def __init__(self, inner: Detector) -> None:
        self.inner, self.cpu, self.runs = inner, 0.0, 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        t0 = time.process_time()
        try:
            return self.inner.detect(image)
        finally:
            self.cpu += time.process_time() - t0
            self.runs += 1


def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = ", ".join(f"{k} {'.'.join(map(str, v))}" for k, v in av.library_versions.items())
    return [
        f"- machine: {platform.machine()}, {cpu}, {os.cpu_count()} cores, Linux "
        f"{platform.release()}",
        f"- python {platform.python_version()}, numpy {np.__version__}, opencv "
        f"{cv2.__version__}, PyAV {av.__version__} ({libs}), onnxruntime {onnxruntime.__version__}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per clip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--clips", default="walk,street", help="comma list of: " + ",".join(SOURCES)
    )
    parser.add_argument("--sizes", default="1080p,720p")
    parser.add_argument("--no-detect", action="store_true", help="skip the detector cases")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "masking.md")
    args = parser.parse_args()

    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    models = (SAMPLE / "models").resolve()
    if not models.is_dir():
        sys.exit(f"sample media not found at {SAMPLE.resolve()}")
    command = "python bench/masking.py " + " ".join(sys.argv[1:])

    cases: dict[str, Callable[[], Step]] = {}
    for method in ("blur", "pixelate", "fill"):

        def yuv_case(m: str = method) -> Step:
            return yuv_step(Masker(facade_plan(m)))

        def bgr_case(m: str = method) -> Step:
            return bgr_step(Masker(facade_plan(m)))

        cases[f"facade {method}, YUV"] = yuv_case
        cases[f"facade {method}, BGR"] = bgr_case
    detect_cases: dict[str, Callable[[], tuple[Step, list[CpuTimed]]]] = {}
    if not args.no_detect:
        for classes, every in ((["face"], 1), (["face"], 5), (["face", "person"], 5)):
            name = f"facade blur + detect {'+'.join(classes)} every {every}, YUV"

            def make(c: list[str] = classes, e: int = every) -> tuple[Step, list[CpuTimed]]:
                masker = Masker(facade_plan("blur", c), models_dir=models, detect_every=e)
                timed = [CpuTimed(d) for d in masker.detectors]
                masker.detectors = list(timed)
                return yuv_step(masker), timed

            detect_cases[name] = make

    lines = [
        "# Masking benchmark",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `{command}` "
        f"(one core pinned: CPU {cpu}; OpenCV, x264, decoder and onnxruntime at 1 thread).",
        "",
        *machine(),
        f"- encoder: libx264 preset {PRESET}, 1 thread; decoder 1 thread; "
        f"{args.frames} frames per clip, {args.rounds} interleaved rounds, medians shown",
        "- fps from process CPU time; ratio = case fps / decode+encode fps of the same round",
        "- detector ms: CPU time of all detectors per detection run (YuNet on the kept area's "
        "box plus margin, scaled to at most 960 px; YOLOv8n at 640x640)",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="vms-bench-") as tmp_s:
        tmp = Path(tmp_s)
        for clip_name in args.clips.split(","):
            for size_name in args.sizes.split(","):
                size = SIZES[size_name]
                clip = tmp / f"{clip_name}-{size_name}.mp4"
                make_clip(SOURCES[clip_name], clip, size, args.frames)
                cp = compile_plan(parse_plan(facade_plan("blur")), *size)
                kept = 1.0 - cp.anon_fraction
                results: dict[str, Result] = {"decode + encode": Result()}
                for name in [*cases, *detect_cases]:
                    results[name] = Result()
                # Warm up imports, code paths and the compile cache.
                run(clip, tmp / "warm.mp4", cases["facade blur, YUV"]())
                for r in range(args.rounds):
                    base_fps, base_mbps, n = run(clip, tmp / "o.mp4", None)
                    results["decode + encode"].fps.append(base_fps)
                    results["decode + encode"].ratio.append(1.0)
                    results["decode + encode"].mbps.append(base_mbps)
                    for name, make_step in cases.items():
                        fps, mbps, _ = run(clip, tmp / "o.mp4", make_step())
                        res = results[name]
                        res.fps.append(fps)
                        res.ratio.append(fps / base_fps)
                        res.mbps.append(mbps)
                    for name, make_det in detect_cases.items():
                        step, timed = make_det()
                        fps, mbps, _ = run(clip, tmp / "o.mp4", step)
                        res = results[name]
                        res.fps.append(fps)
                        res.ratio.append(fps / base_fps)
                        res.mbps.append(mbps)
                        runs = max(1, timed[0].runs)
                        res.detect_ms.append(sum(t.cpu for t in timed) / runs * 1000)
                    print(f"{clip_name} {size_name} round {r + 1}/{args.rounds} done", flush=True)
                lines += [
                    f"## {clip_name} {size_name} ({n} frames; kept strip {kept:.1%} of the frame)",
                    "",
                    "| case | fps | ratio to decode+encode | out Mbit/s | detector ms/run |",
                    "|---|---:|---:|---:|---:|",
                ]
                for name, res in results.items():
                    det = f"{statistics.median(res.detect_ms):.1f}" if res.detect_ms else ""
                    lines.append(
                        f"| {name} | {statistics.median(res.fps):.1f} | "
                        f"{statistics.median(res.ratio):.2f} "
                        f"({min(res.ratio):.2f}-{max(res.ratio):.2f}) | "
                        f"{statistics.median(res.mbps):.1f} | {det} |"
                    )
                lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
