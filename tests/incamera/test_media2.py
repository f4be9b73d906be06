"""The Media2 mask client against the real SOAP test device (schema-driven by the same WSDL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from masking.incamera import DEFAULT_MASK_COLOR, MaskColor, OnvifPolygon
from tests.peers.onvif_device import (
    ONVIF_PASSWORD,
    ONVIF_USER,
    DeviceMask,
    DeviceProfile,
    MaskSupport,
    OnvifDevice,
)
from vms.pipeline import media2
from vms.pipeline.media2 import MaskLimitError, MasksUnsupported
from vms.pipeline.onvif import OnvifAuthError, OnvifError, OnvifUnreachable

pytestmark = pytest.mark.nodb

SQUARE: OnvifPolygon = ((-1.0, 1.0), (0.0, 1.0), (0.0, 0.0), (-1.0, 0.0))
TRIANGLE: OnvifPolygon = ((0.2, 0.2), (0.9, 0.2), (0.5, 0.9))
BAND: OnvifPolygon = ((-1.0, -0.5), (1.0, -0.5), (1.0, -1.0), (-1.0, -1.0))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[DeviceMask]] = []

    def __call__(self, masks: list[DeviceMask]) -> None:
        self.calls.append(masks)


def _device(**kwargs: Any) -> OnvifDevice:
    profile = DeviceProfile("main", "Main", 640, 360, 25, "rtsp://127.0.0.1:9/none")
    return OnvifDevice([profile], **kwargs).start()


@pytest.fixture
def device() -> Iterator[OnvifDevice]:
    d = _device(masks=MaskSupport(max_masks=4, max_points=16), on_masks=Recorder())
    yield d
    d.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def creds(d: OnvifDevice) -> tuple[str, int, str, str]:
    return d.host, d.port, ONVIF_USER, ONVIF_PASSWORD


def test_configurations_and_options(device: OnvifDevice) -> None:
    (vsc,) = run(media2.video_source_configurations(*creds(device)))
    assert vsc.token == "vsc0"
    assert (vsc.width, vsc.height) == (1280, 720)
    options = run(media2.mask_options(*creds(device)))
    assert options.limits.max_masks == 4
    assert options.limits.max_points == 16
    assert options.supports_color
    assert options.color_ranges == (((0.0, 255.0), (0.0, 255.0), (0.0, 255.0)),)
    assert "GetMaskOptions" in device.requests


def test_create_get_replace_delete(device: OnvifDevice) -> None:
    applied = run(media2.apply_masks(*creds(device), [SQUARE, TRIANGLE]))
    assert applied.configuration_token == "vsc0"
    assert len(applied.tokens) == 2
    assert applied.color == DEFAULT_MASK_COLOR
    assert applied.gapless
    masks = run(media2.read_masks(*creds(device)))
    assert [m.token for m in masks] == list(applied.tokens)
    assert masks[0].polygon == SQUARE
    assert masks[1].polygon == TRIANGLE
    assert all(m.type == "Color" and m.enabled for m in masks)
    assert masks[0].color == DEFAULT_MASK_COLOR
    # The device forwarded each change to its camera.
    recorder = device.on_masks
    assert isinstance(recorder, Recorder)
    assert [len(c) for c in recorder.calls] == [1, 2]

    # Replacing: the new ones go in first (two old + one new fit in four), then the old go.
    again = run(media2.apply_masks(*creds(device), [BAND], ours=applied.tokens))
    assert again.gapless
    assert set(again.removed) == set(applied.tokens)
    after = run(media2.read_masks(*creds(device)))
    assert [m.polygon for m in after] == [BAND]
    assert [len(c) for c in recorder.calls][-3:] == [3, 2, 1]

    # Applying the same again changes nothing on the device.
    calls = len(recorder.calls)
    same = run(media2.apply_masks(*creds(device), [BAND], ours=again.tokens))
    assert same.tokens == again.tokens
    assert same.removed == ()
    assert len(recorder.calls) == calls

    run(media2.delete_masks(*creds(device), again.tokens))
    assert run(media2.read_masks(*creds(device))) == ()


def test_replacing_when_slots_are_short_updates_in_place(device: OnvifDevice) -> None:
    first = run(media2.apply_masks(*creds(device), [SQUARE, TRIANGLE, BAND]))
    second = run(media2.apply_masks(*creds(device), [TRIANGLE, BAND], ours=first.tokens))
    assert not second.gapless  # 3 + 2 > 4: SetMask on ours, then delete the spare one
    assert second.tokens == first.tokens[:2]
    assert second.removed == first.tokens[2:]
    assert [m.polygon for m in run(media2.read_masks(*creds(device)))] == [TRIANGLE, BAND]


def test_foreign_masks_are_left_alone_unless_asked(device: OnvifDevice) -> None:
    # An installer's own black mask, created through the device's "web page".
    device.masks["installer"] = DeviceMask(
        "installer", "vsc0", list(BAND), "Color", (0.0, 128.0, 128.0), True
    )
    applied = run(media2.apply_masks(*creds(device), [SQUARE]))
    assert applied.foreign == ("installer",)
    # Ours are recognised by colour even without the tokens (a lost database).
    again = run(media2.apply_masks(*creds(device), [TRIANGLE]))
    assert again.removed == applied.tokens
    assert {m.token for m in run(media2.read_masks(*creds(device)))} == {
        "installer",
        *again.tokens,
    }
    run(media2.apply_masks(*creds(device), [SQUARE], replace_foreign=True))
    assert "installer" not in {m.token for m in run(media2.read_masks(*creds(device)))}


def test_limits_are_checked_before_anything_changes(device: OnvifDevice) -> None:
    with pytest.raises(MaskLimitError, match="takes 4 masks; 5 asked for"):
        run(media2.apply_masks(*creds(device), [SQUARE] * 5))
    many = tuple((x / 10 - 0.9, 0.5 if x % 2 else -0.5) for x in range(17))
    with pytest.raises(MaskLimitError, match="17 points"):
        run(media2.apply_masks(*creds(device), [many]))
    with pytest.raises(MaskLimitError, match="outside"):
        run(media2.apply_masks(*creds(device), [((0.0, 0.0), (2.0, 0.0), (0.0, 1.0))]))
    assert device.masks == {}


def test_rectangle_only_device() -> None:
    d = _device(masks=MaskSupport(max_masks=4, max_points=4, rectangle_only=True))
    try:
        with pytest.raises(MaskLimitError, match="rectangles only"):
            run(media2.apply_masks(*creds(d), [TRIANGLE]))
        applied = run(media2.apply_masks(*creds(d), [SQUARE, BAND]))
        assert len(applied.tokens) == 2
        assert run(media2.mask_options(*creds(d))).rectangle_only
    finally:
        d.stop()


def test_a_colour_list_device_gets_its_nearest_colour() -> None:
    d = _device(masks=MaskSupport(colors=((16.0, 128.0, 128.0), (235.0, 128.0, 128.0))))
    try:
        applied = run(media2.apply_masks(*creds(d), [SQUARE]))
        assert applied.color in (MaskColor(16.0, 128.0, 128.0), MaskColor(235.0, 128.0, 128.0))
        (mask,) = run(media2.read_masks(*creds(d)))
        assert mask.color == applied.color
    finally:
        d.stop()


def test_media2_without_masks_is_unsupported() -> None:
    d = _device(media2=True)
    try:
        with pytest.raises(MasksUnsupported, match="no privacy masks"):
            run(media2.apply_masks(*creds(d), [SQUARE]))
        with pytest.raises(MasksUnsupported):
            run(media2.read_masks(*creds(d)))
    finally:
        d.stop()


def test_a_device_without_media2_is_unsupported() -> None:
    d = _device()
    try:
        with pytest.raises(MasksUnsupported, match="no Media2 service"):
            run(media2.mask_options(*creds(d)))
    finally:
        d.stop()


def test_a_pixelate_only_device_is_unsupported() -> None:
    d = _device(masks=MaskSupport(types=("Pixelated",)))
    try:
        with pytest.raises(MasksUnsupported, match="no solid-colour masks"):
            run(media2.apply_masks(*creds(d), [SQUARE]))
    finally:
        d.stop()


def test_wrong_password_is_an_auth_error_without_the_password(device: OnvifDevice) -> None:
    wrong = "not-the-Pa55word"
    with pytest.raises(OnvifAuthError) as info:
        run(media2.apply_masks(device.host, device.port, ONVIF_USER, wrong, [SQUARE]))
    text = f"{info.value} {info.value.__cause__!r} {info.value.__context__!r}"
    assert wrong not in text
    assert ONVIF_PASSWORD not in text
    assert device.masks == {}


def test_unknown_configuration_token(device: OnvifDevice) -> None:
    with pytest.raises(OnvifError, match="no video source configuration 'nope'"):
        run(media2.read_masks(*creds(device), configuration_token="nope"))


def test_nothing_listening_is_unreachable(closed_port: int) -> None:
    with pytest.raises(OnvifUnreachable):
        run(media2.read_masks("127.0.0.1", closed_port, ONVIF_USER, ONVIF_PASSWORD, timeout=2))
