"""Convert a clip to Annex-B H.264 without B-frames, the input `rtsp_server.py` loops.

    python -m sample_streams.convert IN.mp4 OUT.h264 [--size 1280x720] [--fps 25] [--seconds N]

Without B-frames PTS equals DTS, which is what lets the server rewrite timestamps to
`n * frame_duration` on every loop. A fixed one-second GOP bounds how long a viewer joining the
shared stream waits for a keyframe.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

# Synthetic input understood by `convert`: ffmpeg's lavfi test pattern, no file needed.
TESTSRC = "lavfi:testsrc2"


class FfmpegMissing(RuntimeError):
    """The `ffmpeg` binary is not installed."""


class ConversionError(RuntimeError):
    """ffmpeg ran but failed."""


def ffmpeg_path() -> str:
    """Path of the `ffmpeg` binary, or raise FfmpegMissing with the install hint."""
    found = shutil.which("ffmpeg")
    if found is None:
        raise FfmpegMissing("ffmpeg not found on PATH; install it with `apt-get install -y ffmpeg`")
    return found


def parse_size(text: str) -> tuple[int, int]:
    """`1280x720` -> (1280, 720); both sides must be even for yuv420p."""
    width, sep, height = text.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        size = (0, 0)
    if not sep or size[0] <= 0 or size[1] <= 0 or size[0] % 2 or size[1] % 2:
        raise ValueError(f"size must be WIDTHxHEIGHT with even positive sides, got {text!r}")
    return size


def size_arg(text: str) -> tuple[int, int]:
    """`parse_size` for argparse, which only shows the message of an ArgumentTypeError."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_command(
    src: str | Path,
    dst: str | Path,
    *,
    size: tuple[int, int] | None = None,
    fps: int = 25,
    seconds: float | None = None,
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    """The ffmpeg argument list `convert` runs (exposed so benchmarks can log it)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if str(src) == TESTSRC:
        w, h = size or (640, 360)
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}"]
        if seconds is None:
            seconds = 4.0
    else:
        cmd += ["-i", str(src)]
    if seconds is not None:
        cmd += ["-t", f"{seconds:g}"]
    scale = f"scale={size[0]}:{size[1]}" if size else "scale=trunc(iw/2)*2:trunc(ih/2)*2"
    cmd += [
        "-an", "-sn", "-dn",
        "-vf", f"{scale},fps={fps}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-bf", "0",
        # Fixed GOP without scene-cut keyframes: a keyframe exactly every second.
        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
        "-f", "h264", str(dst),
    ]  # fmt: skip
    return cmd


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    size: tuple[int, int] | None = None,
    fps: int = 25,
    seconds: float | None = None,
) -> Path:
    """Write `src` (a video file, or TESTSRC) to `dst` as Annex-B H.264; return `dst`."""
    dst = Path(dst)
    ffmpeg = ffmpeg_path()
    if str(src) != TESTSRC and not Path(src).is_file():
        raise FileNotFoundError(f"no such video: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename, so a reader never sees half a file and an
    # interrupted run leaves no truncated clip in a cache.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".h264", dir=dst.parent)
    os.close(fd)
    cmd = build_command(src, tmp_name, size=size, fps=fps, seconds=seconds, ffmpeg=ffmpeg)
    logger.debug("converting %s -> %s", src, dst)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or os.path.getsize(tmp_name) == 0:
            raise ConversionError(
                f"ffmpeg failed converting {src} (exit {proc.returncode}): {proc.stderr.strip()}"
            )
        os.replace(tmp_name, dst)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dst


def convert_cached(
    src: str | Path,
    cache_dir: str | Path,
    *,
    size: tuple[int, int] | None = None,
    fps: int = 25,
    seconds: float | None = None,
) -> Path:
    """Like `convert`, into `cache_dir` under a name derived from the inputs; reuse if present."""
    key = f"{src}|{size}|{fps}|{seconds}"
    if str(src) != TESTSRC:
        stat = Path(src).stat()
        key += f"|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    stem = "testsrc2" if str(src) == TESTSRC else Path(src).stem
    label = f"{size[0]}x{size[1]}" if size else "src"
    dst = Path(cache_dir) / f"{stem}-{label}-{fps}fps-{digest}.h264"
    if dst.is_file() and dst.stat().st_size > 0:
        return dst
    return convert(src, dst, size=size, fps=fps, seconds=seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a clip to Annex-B H.264 (no B-frames).")
    parser.add_argument("src", help=f"input video, or {TESTSRC} for a test pattern")
    parser.add_argument("dst", help="output .h264 file")
    parser.add_argument("--size", type=size_arg, default=None, metavar="WxH")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args(argv)
    try:
        out = convert(args.src, args.dst, size=args.size, fps=args.fps, seconds=args.seconds)
    except (FfmpegMissing, ConversionError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
