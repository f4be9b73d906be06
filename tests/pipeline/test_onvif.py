"""The ONVIF client against a real SOAP device service (tests/peers/onvif_device.py) whose
streams come from the real RTSP server."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the environment
from zeep.wsse.username import UsernameToken

from tests.peers.onvif_device import (
    DEVICE_INFO,
    ONVIF_PASSWORD,
    ONVIF_USER,
    OnvifDevice,
    check_username_token,
)
from tests.peers.rtsp import StallServer
from vms.pipeline.onvif import (
    DeviceInfo,
    DeviceProbe,
    OnvifAuthError,
    OnvifError,
    OnvifUnreachable,
    ProfileInfo,
    choose_profile,
    probe,
    resolve_stream_uri,
    with_credentials,
)
from vms.pipeline.source import open_source

pytestmark = pytest.mark.rtsp


def run_probe(device: OnvifDevice, password: str = ONVIF_PASSWORD) -> DeviceProbe:
    return asyncio.run(probe(device.host, device.port, ONVIF_USER, password, timeout=5.0))


def test_probe_returns_device_info_profiles_and_uris(onvif_device: OnvifDevice) -> None:
    result = run_probe(onvif_device)
    assert result.device == DeviceInfo(
        manufacturer=DEVICE_INFO["Manufacturer"],
        model=DEVICE_INFO["Model"],
        firmware=DEVICE_INFO["FirmwareVersion"],
        serial=DEVICE_INFO["SerialNumber"],
        hardware_id=DEVICE_INFO["HardwareId"],
    )
    by_token = {p.token: p for p in result.profiles}
    assert set(by_token) == {"sub", "main"}
    main = by_token["main"]
    assert (main.encoding, main.width, main.height, main.fps) == ("H264", 1280, 720, 25.0)
    assert main.name == "MainStream"
    assert (by_token["sub"].width, by_token["sub"].height) == (640, 360)
    for profile in result.profiles:
        assert profile.stream_uri is not None
        assert profile.stream_uri.startswith("rtsp://127.0.0.1:")
        assert profile.snapshot_uri == onvif_device.url(f"/onvif/snapshot/{profile.token}.jpg")
    assert by_token["main"].stream_uri is not None
    assert by_token["main"].stream_uri.endswith("/real720")
    # The client asked for what a camera expects, and nothing was refused.
    assert {"GetDeviceInformation", "GetProfiles", "GetStreamUri"} <= set(onvif_device.requests)


def test_choose_profile(onvif_device: OnvifDevice) -> None:
    result = run_probe(onvif_device)
    assert choose_profile(result).token == "main"  # highest H.264 resolution
    assert choose_profile(result, "sub").token == "sub"
    with pytest.raises(OnvifError, match="not on"):
        choose_profile(result, "nope")


def test_choose_profile_skips_non_h264() -> None:
    def prof(token: str, enc: str, w: int, h: int) -> ProfileInfo:
        return ProfileInfo(token, token, enc, w, h, 25.0, None, None)

    info = DeviceInfo("m", "m", "f", "s", "h")
    result = DeviceProbe(
        "h", 80, info, (prof("jpeg", "JPEG", 1920, 1080), prof("a", "H264", 640, 360))
    )
    assert choose_profile(result).token == "a"
    with pytest.raises(OnvifError, match=r"no H\.264"):
        choose_profile(DeviceProbe("h", 80, info, (prof("jpeg", "JPEG", 1920, 1080),)))


def test_wrong_password_is_auth_error_without_the_password(onvif_device: OnvifDevice) -> None:
    wrong = "Wr0ng-Passw0rd!"
    with pytest.raises(OnvifAuthError) as info:
        run_probe(onvif_device, password=wrong)
    assert wrong not in str(info.value)
    assert ONVIF_PASSWORD not in str(info.value)
    assert f"127.0.0.1:{onvif_device.port}" in str(info.value)


def test_plain_text_password_token_is_accepted(onvif_device: OnvifDevice) -> None:
    # The device checks PasswordText tokens too; build one with zeep as a client would.
    envelope = etree.fromstring(
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Header/>'
        b"<e:Body/></e:Envelope>"
    )
    token = UsernameToken(ONVIF_USER, ONVIF_PASSWORD)  # type: ignore[no-untyped-call]
    token.apply(envelope, {})  # type: ignore[no-untyped-call]
    assert check_username_token(envelope, ONVIF_USER, ONVIF_PASSWORD, datetime.now(UTC))
    assert not check_username_token(envelope, ONVIF_USER, "other", datetime.now(UTC))


def test_nothing_listening_is_unreachable(closed_port: int) -> None:
    with pytest.raises(OnvifUnreachable, match=str(closed_port)):
        asyncio.run(probe("127.0.0.1", closed_port, ONVIF_USER, "pw-Secret-1", timeout=3.0))


def test_silent_device_is_unreachable_within_timeout(stall_server: StallServer) -> None:
    started = time.monotonic()
    with pytest.raises(OnvifUnreachable, match="did not answer"):
        asyncio.run(probe("127.0.0.1", stall_server.port, ONVIF_USER, "pw-Secret-1", timeout=1.0))
    assert time.monotonic() - started < 2.0


def test_with_credentials_encodes_and_replaces() -> None:
    assert (
        with_credentials("rtsp://old:pw@10.0.0.5:554/s?x=1", "ad min", "p@ss:w/rd")
        == "rtsp://ad%20min:p%40ss%3Aw%2Frd@10.0.0.5:554/s?x=1"
    )
    assert with_credentials("rtsp://10.0.0.5/s", "", "") == "rtsp://10.0.0.5/s"


def test_resolved_stream_uri_plays(onvif_device: OnvifDevice) -> None:
    uri = asyncio.run(
        resolve_stream_uri(onvif_device.host, onvif_device.port, ONVIF_USER, ONVIF_PASSWORD, "sub")
    )
    with open_source(uri, open_timeout=3.0, read_timeout=2.0) as source:
        decoded = next(source.frames())
        assert ONVIF_PASSWORD not in source.url
    assert (decoded.frame.width, decoded.frame.height) == (640, 360)


def test_resolve_unknown_profile_is_an_error(onvif_device: OnvifDevice) -> None:
    with pytest.raises(OnvifError) as info:
        asyncio.run(
            resolve_stream_uri(
                onvif_device.host, onvif_device.port, ONVIF_USER, ONVIF_PASSWORD, "nope"
            )
        )
    assert not isinstance(info.value, OnvifAuthError | OnvifUnreachable)
    assert ONVIF_PASSWORD not in str(info.value)
