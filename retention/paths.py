"""Where footage lives on disk. One layout, shared by the recorder, the sweep and the checker.

    data_dir/recordings/<camera_id>/<YYYY>/<MM>/<DD>/<HH>/<start-epoch-ms>.mp4

Hours are UTC, so the layout never has a daylight-saving hole or overlap. A file being written
is `<start-epoch-ms>.mp4.partial` in the same folder.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

RECORDINGS = "recordings"
SUFFIX = ".mp4"
PARTIAL_SUFFIX = ".mp4.partial"

_REL = re.compile(
    r"^recordings/(?P<camera>\d+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/"
    r"(?P<ms>\d+)\.mp4$"
)


def epoch_ms(at: dt.datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("naive datetime refused: use an aware UTC datetime")
    delta = at.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return delta // dt.timedelta(milliseconds=1)


def from_epoch_ms(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


def relative_segment_path(camera_id: int, start: dt.datetime) -> str:
    """The path stored in the index (POSIX, relative to the data dir)."""
    utc = start.astimezone(dt.UTC) if start.tzinfo else None
    if utc is None:
        raise ValueError("naive datetime refused: use an aware UTC datetime")
    return f"{RECORDINGS}/{camera_id}/{utc:%Y}/{utc:%m}/{utc:%d}/{utc:%H}/{epoch_ms(start)}{SUFFIX}"


def segment_path(data_dir: Path, camera_id: int, start: dt.datetime) -> Path:
    """Absolute path of the segment of `camera_id` starting at `start`."""
    return data_dir / relative_segment_path(camera_id, start)


def partial_path(final: Path) -> Path:
    """The temp name a segment is written under before it is renamed into place."""
    return final.with_name(final.name + ".partial")


def resolve(data_dir: Path, relative: str) -> Path:
    """An index path back to a file, refusing anything that would leave the data dir."""
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"segment path must be relative and inside the data dir: {relative!r}")
    return data_dir.joinpath(*rel.parts)


@dataclass(frozen=True)
class ParsedPath:
    camera_id: int
    start: dt.datetime


def parse_relative(relative: str) -> ParsedPath | None:
    """Camera and start time from a path in the layout, or None if it is not one of ours."""
    m = _REL.match(relative)
    if m is None:
        return None
    start = from_epoch_ms(int(m["ms"]))
    # The folder must agree with the file name; a file dropped in the wrong hour is not ours.
    if (f"{start:%Y}", f"{start:%m}", f"{start:%d}", f"{start:%H}") != (
        m["y"],
        m["m"],
        m["d"],
        m["h"],
    ):
        return None
    return ParsedPath(camera_id=int(m["camera"]), start=start)
