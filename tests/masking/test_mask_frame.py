"""`Masker.mask_frame`: the same pixels as masking in place, without ever writing into the
decoder's frames, and failing closed into its own frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from masking import Detection, Masker
from masking.anonymise import blur, pixelate

# Everything anonymised except a band across the middle (like the facade strip): the whole-
# plane path. A small anonymised corner instead takes the copy-and-mask-in-place path.
MOSTLY: dict[str, Any] = {
    "version": 1,
    "default": "anonymise",
    "zones": [
        {
            "type": "polygon",
            "action": "keep",
            "points": [[0.0, 0.55], [1.0, 0.5], [1.0, 0.7], [0.0, 0.68]],
        }
    ],
}
CORNER: dict[str, Any] = {
    "version": 1,
    "zones": [{"type": "polygon", "action": "anonymise", "points": [[0, 0], [0.3, 0], [0.3, 0.3]]}],
}


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, size=(h, w), dtype=np.uint8)


def decoded(sample_media: Path, n: int) -> list[av.VideoFrame]:
    video = sample_media / "video" / "one-by-one-person-detection.mp4"
    with av.open(str(video)) as container:
        return [f for _, f in zip(range(n), container.decode(video=0), strict=False)]


def planes(frame: av.VideoFrame) -> np.ndarray:
    """Y, U and V as stored (yuv420p rows: no range conversion), copied."""
    return frame.to_ndarray(format="yuv420p").copy()


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane's bytes as stored (no conversion, whatever the pixel format)."""
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8, count=plane.height * plane.line_size)
    return rows.reshape(plane.height, plane.line_size)[:, : plane.width].copy()


@pytest.mark.parametrize("block", [8, 16, 24, 5])
def test_pixelate_into_another_view_matches_in_place_and_reads_only(block: int) -> None:
    src = noise(75, 130)
    before = src.copy()
    out = np.zeros((75, 150), np.uint8)[:, :130]  # a strided destination, like a PyAV plane
    pixelate(src, block, out=out)
    expected = src.copy()
    pixelate(expected, block)
    assert np.array_equal(src, before)
    assert np.array_equal(out, expected)


def test_blur_into_another_view_matches_in_place() -> None:
    src = noise(90, 160)
    out = np.empty_like(src)
    blur(src, 16, out=out)
    expected = src.copy()
    blur(expected, 16)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("method", ["pixelate", "fill"])
def test_mask_frame_gives_the_pixels_of_masking_in_place(sample_media: Path, method: str) -> None:
    plan = {**MOSTLY, "method": method}
    frames = decoded(sample_media, 30)
    fast, reference = Masker(plan), Masker(plan)
    for i, frame in enumerate(frames):
        out = fast.mask_frame(frame)
        assert out is not frame  # the whole-plane path: a frame of the masker's own
        expected = reference.apply_yuv420(av.VideoFrame.from_ndarray(planes(frame), "yuv420p"))
        assert np.array_equal(planes(out), planes(expected)), f"frame {i}"


def test_mask_frame_never_writes_into_decoded_frames(sample_media: Path) -> None:
    """The decoder shares frame buffers with its reference pictures: the input must come out
    untouched, and the frames decoded after it must decode as without masking."""
    plain = [planes(f) for f in decoded(sample_media, 100)]
    masker = Masker({**MOSTLY, "method": "fill"})
    video = sample_media / "video" / "one-by-one-person-detection.mp4"
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 100:
                break
            assert np.array_equal(planes(frame), plain[i]), f"frame {i} changed before masking"
            masker.mask_frame(frame)
            assert np.array_equal(planes(frame), plain[i]), f"frame {i} written into"


def test_mask_frame_keeps_only_the_kept_band(sample_media: Path) -> None:
    frame = decoded(sample_media, 1)[0]
    masker = Masker({**MOSTLY, "method": "fill"})
    out = luma(masker.mask_frame(frame))
    src = luma(frame)
    anon = masker.compiled(frame.width, frame.height).anon_mask > 0
    assert (out[anon] == 16).all()  # limited-range black wherever the plan anonymises
    assert np.array_equal(out[~anon], src[~anon])


def test_mask_frame_reuses_its_frames_round_robin(sample_media: Path) -> None:
    a, b, c = decoded(sample_media, 3)
    masker = Masker({**MOSTLY, "method": "pixelate"})
    out_a = masker.mask_frame(a)
    out_b = masker.mask_frame(b)
    out_c = masker.mask_frame(c)
    assert out_a is out_c  # valid until the call after next
    assert out_a is not out_b
    assert np.array_equal(
        planes(out_c), planes(Masker({**MOSTLY, "method": "pixelate"}).mask_frame(c))
    )


def test_mask_frame_with_small_zones_masks_a_writable_copy(sample_media: Path) -> None:
    frame = decoded(sample_media, 1)[0]
    before = planes(frame)
    out = Masker({**CORNER, "method": "fill"}).mask_frame(frame)
    assert out is frame  # the in-place path: the decoder's buffers were copied first
    assert not np.array_equal(planes(out), before)


class Raising:
    def detect(self, image: np.ndarray) -> list[Detection]:
        raise RuntimeError("model crashed")


def test_mask_frame_fails_closed_into_its_own_frame(sample_media: Path) -> None:
    frame = decoded(sample_media, 1)[0]
    before = planes(frame)
    masker = Masker({**MOSTLY, "method": "pixelate"}, detectors=[Raising()])
    out = masker.mask_frame(frame)
    assert (luma(out) == 16).all()
    assert (np.frombuffer(memoryview(out.planes[1]), np.uint8) == 128).all()
    assert masker.stats.fail_closed == 1
    assert np.array_equal(planes(frame), before)


def test_mask_frame_full_range_black_and_format(sample_media: Path) -> None:
    frame = decoded(sample_media, 1)[0].reformat(format="yuvj420p")
    masker = Masker({**MOSTLY, "method": "fill"})
    out = masker.mask_frame(frame)
    assert out is not frame
    assert out.format.name == "yuvj420p"
    anon = masker.compiled(frame.width, frame.height).anon_mask > 0
    assert (luma(out)[anon] == 0).all()  # full-range black
