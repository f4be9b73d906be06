"""ONVIF client: probe a camera (device info, media profiles, stream and snapshot URIs).

Uses onvif-zeep-async (async, WSDLs bundled). Every call runs under one explicit overall
timeout, the camera's HTTP sessions are always closed, and no error message or returned URI
contains the password — except the one `resolve_stream_uri` builds on purpose for PyAV.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import zeep.exceptions

from vms.pipeline.source import scrub_url

_root_logger = logging.getLogger()
_root_state = (_root_logger.level, list(_root_logger.handlers))
from onvif import ONVIFCamera  # noqa: E402
from onvif.exceptions import ONVIFAuthError  # noqa: E402
from onvif.exceptions import ONVIFError as _LibOnvifError  # noqa: E402

# onvif.client runs logging.basicConfig(level=INFO) at import time; undo it so the application's
# own logging configuration stays in charge.
_root_logger.setLevel(_root_state[0])
_root_logger.handlers[:] = _root_state[1]

logger = logging.getLogger(__name__)

_STREAM_SETUP = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}


class OnvifError(Exception):
    """The device answered, but not with what we asked for."""


class OnvifAuthError(OnvifError):
    """The device rejected the user name or password."""


class OnvifUnreachable(OnvifError):
    """No connection to the device, or no answer within the timeout."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware_id: str


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    token: str
    name: str
    encoding: str | None  # "H264", "H265", "JPEG", ... None without a video encoder
    width: int | None
    height: int | None
    fps: float | None
    stream_uri: str | None  # credentials scrubbed; use resolve_stream_uri to play
    snapshot_uri: str | None

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)


@dataclass(frozen=True, slots=True)
class DeviceProbe:
    host: str
    port: int
    device: DeviceInfo
    profiles: tuple[ProfileInfo, ...]

    def profile(self, token: str) -> ProfileInfo | None:
        return next((p for p in self.profiles if p.token == token), None)


async def probe(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    # An argument rather than the caller's asyncio.timeout(): expiry must become
    # OnvifUnreachable and still close the camera's sessions.
    timeout: float = 5.0,  # noqa: ASYNC109
    adjust_time: bool = True,
) -> DeviceProbe:
    """Device information and every media profile with its stream and snapshot URI."""
    async with _camera(host, port, username, password, timeout, adjust_time) as cam:
        devicemgmt = await cam.create_devicemgmt_service()
        info = await devicemgmt.GetDeviceInformation()
        media = await cam.create_media_service()
        profiles = []
        for raw in await media.GetProfiles() or []:
            token = str(raw.token)
            stream = await media.GetStreamUri({"StreamSetup": _STREAM_SETUP, "ProfileToken": token})
            profiles.append(
                _profile_info(
                    raw,
                    stream_uri=_scrub(_uri(stream), password),
                    snapshot_uri=_scrub(await _snapshot_uri(media, token), password),
                )
            )
    result = DeviceProbe(
        host=host,
        port=port,
        device=DeviceInfo(
            manufacturer=_text(info.Manufacturer),
            model=_text(info.Model),
            firmware=_text(info.FirmwareVersion),
            serial=_text(info.SerialNumber),
            hardware_id=_text(info.HardwareId),
        ),
        profiles=tuple(profiles),
    )
    logger.info(
        "probed %s:%s: %s %s, %d profiles",
        host,
        port,
        result.device.manufacturer,
        result.device.model,
        len(result.profiles),
    )
    return result


def choose_profile(probe: DeviceProbe, token: str | None = None) -> ProfileInfo:
    """The profile with `token`, or else the highest-resolution H.264 profile."""
    if token is not None:
        chosen = probe.profile(token)
        if chosen is None:
            known = ", ".join(p.token for p in probe.profiles) or "none"
            raise OnvifError(f"profile {token!r} not on {probe.host}:{probe.port} (has: {known})")
        return chosen
    h264 = [p for p in probe.profiles if (p.encoding or "").upper() == "H264" and p.pixels]
    if not h264:
        raise OnvifError(f"{probe.host}:{probe.port} offers no H.264 profile")
    # Ties on resolution go to the higher frame rate.
    return max(h264, key=lambda p: (p.pixels, p.fps or 0.0))


async def resolve_stream_uri(
    host: str,
    port: int,
    username: str,
    password: str,
    profile_token: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 (see probe)
    adjust_time: bool = True,
) -> str:
    """The profile's RTSP URI with the credentials inserted, ready for PyAV. Never log it."""
    async with _camera(host, port, username, password, timeout, adjust_time) as cam:
        media = await cam.create_media_service()
        reply = await media.GetStreamUri(
            {"StreamSetup": _STREAM_SETUP, "ProfileToken": profile_token}
        )
    uri = _uri(reply)
    if not uri:
        raise OnvifError(f"{host}:{port} returned no stream URI for profile {profile_token!r}")
    return with_credentials(uri, username, password)


def with_credentials(uri: str, username: str, password: str) -> str:
    """`uri` with `username:password@` (percent-encoded) in place of any userinfo it had."""
    parts = urlsplit(uri)
    hostport = parts.netloc.rpartition("@")[2]
    if not username:
        return urlunsplit(parts._replace(netloc=hostport))
    userinfo = quote(username, safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{hostport}"))


@asynccontextmanager
async def _camera(
    host: str, port: int, username: str, password: str, time_limit: float, adjust_time: bool
) -> AsyncIterator[Any]:
    """A connected ONVIFCamera (XAddrs known); errors mapped; sessions always closed."""
    where = f"{host}:{port}"
    saved_env = {k: os.environ[k] for k in ("http_proxy", "https_proxy") if k in os.environ}
    # no_cache: the bundled WSDLs are read from the package, there is nothing to cache on disk.
    cam = ONVIFCamera(host, port, username, password, no_cache=True, adjust_time=adjust_time)
    # ONVIFCamera() deletes the proxy variables process-wide; put them back.
    os.environ.update(saved_env)
    error: OnvifError | None = None
    cause: BaseException | None = None
    try:
        async with asyncio.timeout(time_limit):
            await cam.update_xaddrs()
            yield cam
    except TimeoutError as exc:
        cause = exc
        error = OnvifUnreachable(f"ONVIF device {where} did not answer within {time_limit:g}s")
    # ValueError: zeep raises it on some malformed replies (e.g. a fault subcode it cannot parse).
    except (zeep.exceptions.Error, aiohttp.ClientError, OSError, _LibOnvifError, ValueError) as exc:
        cause = exc
        error = _map_error(exc, where, password)
    finally:
        await cam.close()
    if error is not None:
        # Raised after close() so a failing close cannot mask it. The cause never holds the
        # password: the WS-Security header is not echoed in faults or transport errors.
        raise error from cause


def _map_error(exc: BaseException, where: str, password: str) -> OnvifError:
    # The library wraps errors raised while building a request in its own ONVIFError.
    cause = exc.__cause__ if isinstance(exc, _LibOnvifError) and exc.__cause__ else exc
    detail = _scrub(f"{type(cause).__name__}: {_describe(cause)}", password) or ""
    if isinstance(cause, ONVIFAuthError) or _is_auth_fault(cause):
        return OnvifAuthError(f"ONVIF device {where} rejected the credentials ({detail})")
    if isinstance(cause, zeep.exceptions.TransportError) and cause.status_code in (401, 403):
        return OnvifAuthError(
            f"ONVIF device {where} rejected the credentials (HTTP {cause.status_code})"
        )
    if isinstance(cause, aiohttp.ClientConnectionError | OSError):
        return OnvifUnreachable(f"cannot connect to ONVIF device {where} ({detail})")
    return OnvifError(f"ONVIF request to {where} failed ({detail})")


def _is_auth_fault(exc: BaseException) -> bool:
    if not isinstance(exc, zeep.exceptions.Fault):
        return False
    subcodes = exc.subcodes or []
    texts = [getattr(code, "text", str(code)) for code in subcodes]
    # Devices disagree on the subcode (ter:NotAuthorized, wsse:FailedAuthentication, ...), and
    # some send only a reason text; match all of them.
    haystack = " ".join([*texts, str(exc.code or ""), str(exc.message or "")]).lower()
    return any(word in haystack for word in ("notauthorized", "failedauthentication", "auth"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, zeep.exceptions.Fault):
        return str(exc.message or exc.code or "SOAP fault")
    return str(exc) or "no details"


async def _snapshot_uri(media: Any, token: str) -> str | None:
    try:
        return _uri(await media.GetSnapshotUri({"ProfileToken": token}))
    except zeep.exceptions.Fault as exc:
        # Snapshots are optional in ONVIF Profile S; a device without them is still usable.
        if _is_auth_fault(exc):
            raise
        logger.debug("no snapshot URI for profile %s: %s", token, exc.message)
        return None


def _profile_info(raw: Any, *, stream_uri: str | None, snapshot_uri: str | None) -> ProfileInfo:
    encoder = getattr(raw, "VideoEncoderConfiguration", None)
    resolution = getattr(encoder, "Resolution", None)
    rate = getattr(encoder, "RateControl", None)
    fps = getattr(rate, "FrameRateLimit", None)
    return ProfileInfo(
        token=str(raw.token),
        name=_text(getattr(raw, "Name", None)),
        encoding=str(encoder.Encoding) if encoder is not None and encoder.Encoding else None,
        width=_int(getattr(resolution, "Width", None)),
        height=_int(getattr(resolution, "Height", None)),
        fps=float(fps) if fps else None,
        stream_uri=stream_uri,
        snapshot_uri=snapshot_uri,
    )


def _uri(reply: Any) -> str | None:
    uri = getattr(reply, "Uri", None)
    return str(uri) if uri else None


def _scrub(text: str | None, password: str) -> str | None:
    return scrub_url(text, (password,) if password else ()) if text is not None else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None
