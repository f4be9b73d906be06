"""ONVIF client: probe a camera (device info, media profiles, stream and snapshot URIs).

Uses onvif-zeep-async (async, WSDLs bundled). Every call runs under one explicit overall
timeout, the camera's HTTP sessions are always closed, and no error message or returned URI
contains the password — except the one `resolve_stream_uri` builds on purpose for PyAV.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import zeep.exceptions

from vms.core import netpolicy
from vms.pipeline.config import SourceSpec
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
    """The device answered, but not with what we asked for. Messages are ours: they never
    carry what the remote end sent (a probe must not become a way to read other servers)."""

    kind = "error"


class OnvifAuthError(OnvifError):
    """The device rejected the user name or password."""

    kind = "auth"


class OnvifUnreachable(OnvifError):
    """No connection to the device, or no answer within the timeout."""

    kind = "unreachable"


class OnvifTimeout(OnvifUnreachable):
    kind = "timeout"


class OnvifRefused(OnvifUnreachable):
    kind = "refused"


class OnvifNotAllowed(OnvifError):
    """The host is outside the camera networks this server may reach."""

    kind = "not_allowed"


class NotOnvif(OnvifError):
    """Something answers, but not as an ONVIF device."""

    kind = "not_onvif"


class OnvifNoProfile(OnvifError):
    """The device has no media profile with the configured token."""

    kind = "no_profile"


class OnvifRedirected(OnvifError):
    """The device points its services, or its stream, somewhere we do not follow."""

    kind = "redirected"


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
    networks: Sequence[netpolicy.IPNetwork] | None = None,
    stream_hosts: Sequence[str] = (),
) -> DeviceProbe:
    """Device information and every media profile with its stream and snapshot URI (a URI
    that is not rtsp:// on the device's own host, or one of `stream_hosts`, is left out)."""
    where = f"{host}:{port}"
    async with _camera(
        host, port, username, password, timeout, adjust_time, networks=networks
    ) as cam:
        known = {host, str(cam.host)}
        devicemgmt = await cam.create_devicemgmt_service()
        info = await devicemgmt.GetDeviceInformation()
        media = await cam.create_media_service()
        profiles = []
        for raw in await media.GetProfiles() or []:
            token = str(raw.token)
            stream = await media.GetStreamUri({"StreamSetup": _STREAM_SETUP, "ProfileToken": token})
            uri = _uri(stream)
            if uri is not None:
                try:
                    check_stream_uri(uri, where, known, stream_hosts)
                except OnvifRedirected as exc:
                    logger.warning("%s (profile %s)", exc, token)
                    uri = None
            profiles.append(
                _profile_info(
                    raw,
                    stream_uri=_scrub(uri, password),
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


def choose_live_profile(probe: DeviceProbe, recorded: str | None) -> ProfileInfo | None:
    """A substream for live view: among H.264 profiles smaller than the recorded one, the
    smallest of at least 360 lines (a grid tile stays legible), else the largest there is."""
    main = probe.profile(recorded) if recorded is not None else None
    if main is None:
        return None
    smaller = [
        p
        for p in probe.profiles
        if (p.encoding or "").upper() == "H264" and p.pixels and p.pixels < main.pixels
    ]
    if not smaller:
        return None
    legible = [p for p in smaller if (p.height or 0) >= 360]
    if legible:
        return min(legible, key=lambda p: (p.pixels, -(p.fps or 0.0)))
    return max(smaller, key=lambda p: (p.pixels, p.fps or 0.0))


async def resolve_stream_uri(
    host: str,
    port: int,
    username: str,
    password: str,
    profile_token: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 (see probe)
    adjust_time: bool = True,
    networks: Sequence[netpolicy.IPNetwork] | None = None,
    stream_hosts: Sequence[str] = (),
) -> str:
    """The profile's RTSP URI with the credentials inserted, ready for PyAV. Never log it.
    Refused (OnvifRedirected) unless it is rtsp:// or rtsps:// on the device's own host or one
    of `stream_hosts`."""
    async with _camera(
        host, port, username, password, timeout, adjust_time, networks=networks
    ) as cam:
        known = {host, str(cam.host)}
        media = await cam.create_media_service()
        try:
            reply = await media.GetStreamUri(
                {"StreamSetup": _STREAM_SETUP, "ProfileToken": profile_token}
            )
        except zeep.exceptions.Fault as exc:
            # A token typed wrong, or a profile deleted on the camera: say so, not "not ONVIF".
            if _is_fault(exc, "noprofile"):
                raise OnvifNoProfile(
                    f"ONVIF device {host}:{port} has no media profile {profile_token!r}"
                ) from None
            raise
    uri = _uri(reply)
    if not uri:
        raise OnvifError(f"{host}:{port} returned no stream URI for profile {profile_token!r}")
    check_stream_uri(uri, f"{host}:{port}", known, stream_hosts)
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
    host: str,
    port: int,
    username: str,
    password: str,
    time_limit: float,
    adjust_time: bool,
    *,
    networks: Sequence[netpolicy.IPNetwork] | None = None,
) -> AsyncIterator[Any]:
    """A connected ONVIFCamera (XAddrs known and all on the device's own host); errors
    mapped; sessions always closed. With `networks`, the host must resolve inside them and the
    connection goes to the address that was checked."""
    where = f"{host}:{port}"
    address = host
    if networks is not None:
        try:
            address = netpolicy.resolve_allowed(host, port, networks)
        except netpolicy.HostNotAllowed as exc:
            raise OnvifNotAllowed(f"ONVIF device {where}: {exc}") from None
    saved_env = {k: os.environ[k] for k in ("http_proxy", "https_proxy") if k in os.environ}
    # no_cache: the bundled WSDLs are read from the package, there is nothing to cache on disk.
    cam = ONVIFCamera(address, port, username, password, no_cache=True, adjust_time=adjust_time)
    # ONVIFCamera() deletes the proxy variables process-wide; put them back.
    os.environ.update(saved_env)
    error: OnvifError | None = None
    cause: BaseException | None = None
    try:
        async with asyncio.timeout(time_limit):
            await cam.update_xaddrs()
            _check_xaddrs(cam, where, {host, address})
            yield cam
    except OnvifError as exc:
        error = exc
    except TimeoutError as exc:
        cause = exc
        error = OnvifTimeout(f"ONVIF device {where} did not answer within {time_limit:g}s")
    # ValueError: zeep raises it on some malformed replies (e.g. a fault subcode it cannot parse).
    except (zeep.exceptions.Error, aiohttp.ClientError, OSError, _LibOnvifError, ValueError) as exc:
        cause = exc
        error = _map_error(exc, where, password)
    except Exception as exc:
        # Whatever else a reply makes the SOAP stack trip over (an HTML page, garbage): the
        # other end is not an ONVIF device we can use.
        cause = exc
        logger.debug("ONVIF %s: unusable reply (%s)", where, type(exc).__name__)
        error = NotOnvif(f"{where} does not answer as an ONVIF device")
    finally:
        await cam.close()
    if error is not None:
        # Raised after close() so a failing close cannot mask it. The cause never holds the
        # password: the WS-Security header is not echoed in faults or transport errors.
        raise error from cause


def _map_error(exc: BaseException, where: str, password: str) -> OnvifError:
    # The library wraps errors raised while building a request in its own ONVIFError.
    cause = exc.__cause__ if isinstance(exc, _LibOnvifError) and exc.__cause__ else exc
    # The remote end's words go to the server's debug log only, scrubbed.
    logger.debug(
        "ONVIF %s: %s", where, _scrub(f"{type(cause).__name__}: {_describe(cause)}", password)
    )
    if isinstance(cause, ONVIFAuthError) or _is_auth_fault(cause):
        return OnvifAuthError(f"ONVIF device {where} rejected the credentials")
    if isinstance(cause, zeep.exceptions.TransportError) and cause.status_code in (401, 403):
        return OnvifAuthError(
            f"ONVIF device {where} rejected the credentials (HTTP {cause.status_code})"
        )
    if isinstance(cause, ConnectionRefusedError) or (
        isinstance(cause, aiohttp.ClientConnectorError)
        and isinstance(cause.os_error, ConnectionRefusedError)
    ):
        return OnvifRefused(f"ONVIF device {where} refused the connection")
    if isinstance(cause, aiohttp.ClientConnectionError | OSError):
        return OnvifUnreachable(f"cannot connect to ONVIF device {where}")
    return NotOnvif(f"{where} does not answer as an ONVIF device")


def _hosts_match(name: str, known: set[str]) -> bool:
    """Whether `name` is one of `known` (names or addresses), directly or by resolving."""
    wanted = {k.strip("[]").lower() for k in known}
    if name.strip("[]").lower() in wanted:
        return True
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return any(str(info[4][0]).split("%", 1)[0].lower() in wanted for info in infos)


def _check_xaddrs(cam: Any, where: str, known: set[str]) -> None:
    """Every service address the device advertises must be on the device itself: following
    XAddrs elsewhere would let a device (or whoever answers as one) steer the server's
    requests into the internal network."""
    for xaddr in (getattr(cam, "xaddrs", None) or {}).values():
        if not xaddr:
            continue
        host = urlsplit(str(xaddr)).hostname or ""
        if not _hosts_match(host, known):
            raise OnvifRedirected(
                f"ONVIF device {where} points its services at another host: refused"
            )


def check_stream_uri(uri: str, where: str, known: set[str], extra_hosts: Sequence[str]) -> str:
    """A stream URI from a device must be rtsp:// or rtsps:// on the device's own host (or
    one allow-listed for it): never a file, a local path or an internal web address."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
    except ValueError:
        raise OnvifRedirected(f"ONVIF device {where} returned an unusable stream URI") from None
    if parts.scheme.lower() not in ("rtsp", "rtsps"):
        raise OnvifRedirected(
            f"ONVIF device {where} returned a stream URI that is not rtsp:// or rtsps://: refused"
        )
    if not host or not _hosts_match(host, known | set(extra_hosts)):
        raise OnvifRedirected(
            f"ONVIF device {where} returned a stream URI on another host: refused"
        )
    return uri


def _is_auth_fault(exc: BaseException) -> bool:
    if not isinstance(exc, zeep.exceptions.Fault):
        return False
    subcodes = exc.subcodes or []
    texts = [getattr(code, "text", str(code)) for code in subcodes]
    # Devices disagree on the subcode (ter:NotAuthorized, wsse:FailedAuthentication, ...), and
    # some send only a reason text; match all of them.
    haystack = " ".join([*texts, str(exc.code or ""), str(exc.message or "")]).lower()
    return any(word in haystack for word in ("notauthorized", "failedauthentication", "auth"))


def _is_fault(exc: zeep.exceptions.Fault, subcode: str) -> bool:
    texts = [getattr(code, "text", str(code)) for code in exc.subcodes or []]
    return any(subcode in str(text).lower() for text in texts)


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


def resolve_source_url(spec: SourceSpec, timeout: float) -> str:
    """The RTSP URL (with credentials) of the configured or best ONVIF profile."""

    async def resolve() -> str:
        host, port = spec.onvif_host or "", spec.onvif_port or 80
        user, password = spec.username or "", spec.password or ""
        networks = netpolicy.parse_networks(spec.networks) if spec.networks else None
        token = spec.profile_token
        if token is None:
            found = await probe(
                host,
                port,
                user,
                password,
                timeout=timeout,
                networks=networks,
                stream_hosts=spec.stream_hosts,
            )
            token = choose_profile(found).token
        return await resolve_stream_uri(
            host,
            port,
            user,
            password,
            token,
            timeout=timeout,
            networks=networks,
            stream_hosts=spec.stream_hosts,
        )

    return asyncio.run(resolve())
