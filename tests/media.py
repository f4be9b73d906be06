"""Small real H.264 MP4s made in the test (PyAV), for every test that decodes footage.

`make_segment`/`make_run` stamp each frame with its global index (for cuts and exports);
`write_mp4` is the plainest file (for checks that only need something that decodes).

The stamp is 16 black/white blocks (two rows of eight, 40x40 px) that survive any sane
compression, so a test can read back exactly which source frames a cut contains.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT = 320, 240
BLOCK = 40
BITS = 16


@dataclass(frozen=True)
class MadeSegment:
    path: Path
    start: dt.datetime
    end: dt.datetime
    first_index: int
    frames: int


def stamp(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """An RGB frame: a gradient with the index's bits as blocks along the top."""
    ramp = np.linspace(40, 200, width, dtype=np.uint8)
    img = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2).copy()
    for bit in range(BITS):
        row, col = divmod(bit, 8)
        on = (index >> bit) & 1
        img[row * BLOCK : (row + 1) * BLOCK, col * BLOCK : (col + 1) * BLOCK] = 255 if on else 0
    return img


def read_stamp(rgb: np.ndarray) -> int:
    gray = rgb.mean(axis=2)
    value = 0
    for bit in range(BITS):
        row, col = divmod(bit, 8)
        block = gray[
            row * BLOCK + 8 : (row + 1) * BLOCK - 8, col * BLOCK + 8 : (col + 1) * BLOCK - 8
        ]
        if block.mean() > 128:
            value |= 1 << bit
    return value


def make_segment(
    path: Path,
    *,
    start: dt.datetime,
    first_index: int,
    frames: int,
    fps: int = 10,
    gop: int = 10,
    bframes: int = 0,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> MadeSegment:
    """One MP4 segment of `frames` frames; frame k shows index first_index + k at start + k/fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {
            "crf": "20",
            "preset": "veryfast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}",
        }
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(stamp(first_index + k, *size), format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return MadeSegment(
        path=path,
        start=start,
        end=start + dt.timedelta(seconds=frames / fps),
        first_index=first_index,
        frames=frames,
    )


def make_run(
    folder: Path,
    *,
    start: dt.datetime,
    segments: int,
    seconds: int,
    fps: int = 10,
    gop: int = 10,
    bframes: int = 0,
    skip: frozenset[int] = frozenset(),
) -> list[MadeSegment]:
    """Back-to-back segments; indices in `skip` leave a gap (their frames are never written)."""
    out = []
    for i in range(segments):
        seg_start = start + dt.timedelta(seconds=i * seconds)
        if i in skip:
            continue
        out.append(
            make_segment(
                folder / f"seg{i:03d}.mp4",
                start=seg_start,
                first_index=i * seconds * fps,
                frames=seconds * fps,
                fps=fps,
                gop=gop,
                bframes=bframes,
            )
        )
    return out


def decoded_frames(path: Path) -> list[tuple[float, int]]:
    """(seconds from the file's first frame, stamped index) for every frame of a video."""
    out: list[tuple[float, int]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        assert tb is not None
        first: float | None = None
        for frame in container.decode(stream):
            assert frame.pts is not None
            t = float(frame.pts * tb)
            first = t if first is None else first
            out.append((round(t - first, 3), read_stamp(frame.to_ndarray(format="rgb24"))))
    return out


def write_mp4(
    path: Path, *, frames: int = 25, fps: int = 25, size: tuple[int, int] = (64, 48)
) -> Path:
    """`frames` frames of a small stamped picture at `path` (parents created)."""
    make_segment(
        path,
        start=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        first_index=0,
        frames=frames,
        fps=fps,
        gop=fps,
        size=size,
    )
    return path
