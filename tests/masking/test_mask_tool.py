"""`vms mask` and the reusable tool functions: real files in, real files out."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from masking.tool import mask_image, mask_video, render_preview
from vms.cli_mask import mask

LEFT_KEPT = {
    "method": "pixelate",
    "default": "anonymise",
    "zones": [
        {"type": "polygon", "action": "keep", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    ],
}


@pytest.fixture(scope="module")
def clip(sample_media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 frames of the walking video, re-encoded with B-frames (as cameras rarely do)."""
    out = tmp_path_factory.mktemp("clip") / "walk.mp4"
    with (
        av.open(str(sample_media / "video" / "one-by-one-person-detection.mp4")) as src,
        av.open(str(out), "w") as dst,
    ):
        stream = dst.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 768, 432, "yuv420p"
        stream.options = {"preset": "ultrafast", "bf": "2"}
        for i, frame in enumerate(src.decode(video=0)):
            if i == 20:
                break
            frame.pict_type = av.video.frame.PictureType.NONE
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    return out


def decode_all(path: Path) -> tuple[list[np.ndarray], list[float]]:
    frames, times = [], []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="bgr24"))
            times.append(float(f.time or 0.0))
    return frames, times


def test_mask_video_keeps_timing_and_masks(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "masked.mp4"
    progress: list[tuple[int, int | None]] = []
    stats = mask_video(clip, out, LEFT_KEPT, progress=lambda d, t: progress.append((d, t)))
    assert stats.frames == 20
    assert stats.fail_closed == 0
    assert progress[-1] == (20, 20)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.width, s.height) == ("h264", 768, 432)
        assert s.average_rate == Fraction(10)
        assert not c.streams.audio
    src_frames, src_times = decode_all(clip)
    out_frames, out_times = decode_all(out)
    assert out_times == pytest.approx(src_times)
    for a, b in zip(src_frames, out_frames, strict=True):
        kept = np.abs(a[:, :370].astype(int) - b[:, :370]).mean()
        masked = np.abs(a[:, 400:].astype(int) - b[:, 400:]).mean()
        assert kept < 4, "kept half should only carry encoding noise"
        # Pixelation removes the wall's and floor's fine texture.
        assert (
            np.abs(np.diff(b[:, 400:].astype(int), axis=1)).mean()
            < 0.5 * np.abs(np.diff(a[:, 400:].astype(int), axis=1)).mean()
        )
        assert masked > kept


def test_mask_image(sample_media: Path, tmp_path: Path, scenes: Any) -> None:
    src = sample_media / "images" / "grace_hopper.jpg"
    out = tmp_path / "out.png"
    mask_image(src, out, LEFT_KEPT)
    a, b = scenes.imread(src), scenes.imread(out)
    assert a.shape == b.shape
    assert np.array_equal(a[:, :250], b[:, :250])
    assert (a[:, 260:] != b[:, 260:]).any(axis=2).mean() > 0.8


def test_preview_draws_zones_line_points_and_horizon(scenes: Any) -> None:
    cam = scenes.Camera.looking(640, 360, 450.0, (0.0, 0.5, 4.0), (1.0, 0.35, -0.12))
    plan = {
        "default": "anonymise",
        "calibration": cam.calibration(
            [(8.0, 1.0), (30.0, 2.0), (25.0, 9.0), (10.0, 5.0), (16.0, 3.0)]
        ),
        "zones": [
            {"type": "facade_strip", "action": "keep", "facade": [[-40, 0], [80, 0]], "width_m": 2}
        ],
    }
    frame = np.full((360, 640, 3), 128, np.uint8)
    pic = render_preview(frame, plan)
    assert pic.shape == frame.shape
    assert pic is not frame
    assert np.array_equal(frame, np.full((360, 640, 3), 128, np.uint8)), "input untouched"

    def count(bgr: tuple[int, int, int]) -> int:
        return int((np.abs(pic.astype(int) - bgr).sum(axis=2) < 30).sum())

    assert count((0, 220, 255)) > 100  # facade line
    assert count((255, 200, 0)) > 20  # calibration points
    assert count((230, 60, 230)) > 100  # horizon
    assert count((60, 200, 60)) > 100  # kept outline
    # Anonymised area tinted red, kept area not.
    assert int(pic[100, 500, 2]) > int(pic[100, 500, 0]) + 40
    cx, cy = (cam.to_normalised(np.array([[12.0, 1.0]]))[0] * [640, 360]).astype(int)
    assert tuple(pic[cy, cx]) == (128, 128, 128)


@pytest.fixture
def cli() -> Any:
    app = typer.Typer()
    app.command("mask")(mask)

    @app.callback()
    def main() -> None:
        """vms"""

    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, ["mask", *args])

    return run


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(LEFT_KEPT))
    return path


def test_cli_masks_video_and_image(
    cli: Any, clip: Path, plan_file: Path, tmp_path: Path, sample_media: Path, scenes: Any
) -> None:
    result = cli(str(clip), "-o", str(tmp_path / "o.mp4"), "--plan", str(plan_file))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.mp4").stat().st_size > 1000
    result = cli(
        str(sample_media / "images" / "bus.jpg"),
        "-o",
        str(tmp_path / "o.jpg"),
        "--plan",
        str(plan_file),
    )
    assert result.exit_code == 0, result.output
    assert scenes.imread(tmp_path / "o.jpg").shape == (1080, 810, 3)


def test_cli_preview_of_a_video_writes_its_first_frame(
    cli: Any, clip: Path, plan_file: Path, tmp_path: Path, scenes: Any
) -> None:
    result = cli(str(clip), "-o", str(tmp_path / "p.png"), "--plan", str(plan_file), "--preview")
    assert result.exit_code == 0, result.output
    assert scenes.imread(tmp_path / "p.png").shape == (432, 768, 3)
    result = cli(str(clip), "-o", str(tmp_path / "p.mp4"), "--plan", str(plan_file), "--preview")
    assert result.exit_code == 1
    assert result.output.startswith("error: output ")
    assert "must be an image" in result.output


def test_cli_bad_plan_is_one_clear_line(cli: Any, clip: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "method": "smudge",
                "zones": [{"type": "polygon", "action": "keep", "points": [[0, 0]]}],
            }
        )
    )
    result = cli(str(clip), "-o", str(tmp_path / "o.mp4"), "--plan", str(bad))
    assert result.exit_code == 2
    assert result.output == (
        f"error: bad plan {bad}: method: Input should be 'blur', 'pixelate' or 'fill'; "
        "zones.0.points: List should have at least 3 items after validation, not 1\n"
    )
    assert not (tmp_path / "o.mp4").exists()


def test_cli_unreadable_input(cli: Any, plan_file: Path, tmp_path: Path) -> None:
    result = cli(
        str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.mp4"), "--plan", str(plan_file)
    )
    assert result.exit_code == 1
    assert result.output == f"error: cannot read input {tmp_path / 'nope.mp4'}: no such file\n"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    result = cli(str(junk), "-o", str(tmp_path / "o.mp4"), "--plan", str(plan_file))
    assert result.exit_code == 1
    assert result.output == (
        f"error: cannot open video {junk}: Invalid data found when processing input\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4", "plan.json"]
    missing_plan = tmp_path / "missing.json"
    result = cli(str(junk), "-o", str(tmp_path / "o.mp4"), "--plan", str(missing_plan))
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot read plan {missing_plan}")
