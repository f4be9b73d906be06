"""Serve the sample footage as demo cameras until Ctrl-C.

    python -m sample_streams [--port 8554] [--size 1280x720] [--seconds 20] [--cache DIR]

Converts each `*.mp4` of the sample media once (cached) and prints one RTSP URL per camera.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sample_streams import (
    REPO_ROOT,
    RtspServerError,
    find_sample_media,
    gst_problem,
    start_demo_server,
)
from sample_streams.convert import ConversionError, FfmpegMissing, size_arg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the sample footage as RTSP cameras.")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--size", type=size_arg, default=(1280, 720), metavar="WxH")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each loop")
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / "data" / "sample_streams")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    problem = gst_problem()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if find_sample_media() is None:
        print("error: no sample media; set VMS_SAMPLE_MEDIA_DIR", file=sys.stderr)
        return 1
    try:
        server = start_demo_server(
            args.cache, size=args.size, seconds=args.seconds, port=args.port
        )  # fmt: skip
    except (FfmpegMissing, ConversionError, RtspServerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        for mount, clip in server.mounts.items():
            print(f"{server.url(mount)}  ({Path(clip).name})", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print("error: RTSP server exited", file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
