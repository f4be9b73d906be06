"""A tiny real MP4 (H.264, made with PyAV in the test), for the checks that decode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_mp4(
    path: Path, *, frames: int = 25, fps: int = 25, size: tuple[int, int] = (64, 48)
) -> Path:
    """Write `frames` frames of a moving gradient to `path` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            img = np.full((height, width, 3), (i * 9) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
