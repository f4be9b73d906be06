"""ONVIF Media2 privacy masks: read a camera's mask options and masks, and push vms's own masks.

Over 500 lines on purpose: one protocol client, whose calls, SOAP transport (`_Media2`) and
XML building and parsing change together with `wsdl/media2.wsdl`; it is a forkserver preload,
and the ONVIF test peer reuses its document loader.

Same rules as `vms.pipeline.onvif`: onvif-zeep-async for the device service (GetServices finds
the Media2 XAddr), one explicit overall timeout per call, every HTTP session closed, no password
in any message. onvif-zeep-async ships no Media2 WSDL, so the operations come from our own
`wsdl/media2.wsdl` (the spec's namespace, element and type names; tt: types from the package's
`onvif.xsd`).

Which masks are ours: the tokens vms created before (kept by the caller, returned in
`AppliedMasks.tokens`) and any solid-colour mask in vms's exact colour. Other masks (an
installer's own) are left alone unless `replace_foreign=True`; they still count against the
camera's mask limit and may hide kept area, which the frame check then reports.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import zeep.exceptions
from zeep.wsdl import Document

from masking.incamera import (
    DEFAULT_MASK_COLOR,
    YCBCR_COLORSPACE,
    MaskColor,
    MaskLimits,
    OnvifPolygon,
    pick_mask_color,
)

# Imported before any onvif module: it undoes the logging set-up onvif.client does on import.
from vms.core.netpolicy import IPNetwork
from vms.pipeline.onvif import OnvifError, _camera, _is_auth_fault

logger = logging.getLogger(__name__)

NS_MEDIA2 = "http://www.onvif.org/ver20/media/wsdl"
BINDING = f"{{{NS_MEDIA2}}}Media2Binding"
WSDL_PATH = Path(__file__).with_name("wsdl") / "media2.wsdl"
# How close (in YCbCr units) a mask's colour must be to ours to count as ours: cameras store
# colours as integers or in their own precision.
_OUR_COLOR_DISTANCE = 1.5


class MasksUnsupported(OnvifError):
    """The device has no Media2 service, or Media2 without solid-colour privacy masks."""


class MaskLimitError(OnvifError):
    """The masks asked for do not fit the device's limits (count, points, rectangles)."""


@dataclass(frozen=True, slots=True)
class VideoSourceConfig:
    token: str
    name: str
    source_token: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class MaskOptions:
    max_masks: int
    max_points: int
    types: tuple[str, ...]
    rectangle_only: bool
    single_color_only: bool
    colors: tuple[MaskColor, ...]  # the device's YCbCr ColorList
    # YCbCr ColorspaceRanges: ((min, max) of Y, Cb, Cr)
    color_ranges: tuple[tuple[tuple[float, float], tuple[float, float], tuple[float, float]], ...]

    @property
    def limits(self) -> MaskLimits:
        return MaskLimits(self.max_masks, self.max_points, self.rectangle_only)

    @property
    def supports_color(self) -> bool:
        return "Color" in self.types


@dataclass(frozen=True, slots=True)
class CameraMask:
    token: str
    configuration_token: str
    polygon: OnvifPolygon
    type: str
    color: MaskColor | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class AppliedMasks:
    configuration_token: str
    tokens: tuple[str, ...]  # vms's masks now on the device, in the order of the polygons
    color: MaskColor  # the colour they were created in (what the frame check expects)
    removed: tuple[str, ...]  # our earlier masks that were deleted
    foreign: tuple[str, ...]  # masks that are not ours and were left in place
    # True when the new masks were all in place before any old one went: no moment with less.
    gapless: bool


async def video_source_configurations(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 (see vms.pipeline.onvif.probe)
    adjust_time: bool = True,
    networks: Sequence[IPNetwork] | None = None,
) -> tuple[VideoSourceConfig, ...]:
    """The device's Media2 video source configurations (masks are bound to one of them)."""
    async with _media2(host, port, username, password, timeout, adjust_time, networks) as m2:
        return await m2.configurations()


async def mask_options(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    configuration_token: str | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109
    adjust_time: bool = True,
    networks: Sequence[IPNetwork] | None = None,
) -> MaskOptions:
    """GetMaskOptions for a video source configuration (the only one, if not given)."""
    async with _media2(host, port, username, password, timeout, adjust_time, networks) as m2:
        return await m2.options(await m2.configuration(configuration_token))


async def read_masks(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    configuration_token: str | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109
    adjust_time: bool = True,
    networks: Sequence[IPNetwork] | None = None,
) -> tuple[CameraMask, ...]:
    """Every mask on a video source configuration (the only one, if not given)."""
    async with _media2(host, port, username, password, timeout, adjust_time, networks) as m2:
        return await m2.masks(await m2.configuration(configuration_token))


async def apply_masks(
    host: str,
    port: int,
    username: str,
    password: str,
    polygons: Sequence[OnvifPolygon],
    *,
    configuration_token: str | None = None,
    color: MaskColor = DEFAULT_MASK_COLOR,
    ours: Collection[str] = (),
    replace_foreign: bool = False,
    timeout: float = 10.0,  # noqa: ASYNC109
    adjust_time: bool = True,
    networks: Sequence[IPNetwork] | None = None,
) -> AppliedMasks:
    """Replace vms's masks on the device by `polygons` (ONVIF coordinates), solid `color`.

    The colour actually used is the device's option nearest to `color` (see
    `pick_mask_color`); it is returned for the frame check. New masks are created before old
    ones are deleted whenever the device's mask limit allows, so nothing is exposed meanwhile.
    Raises MasksUnsupported, MaskLimitError, OnvifAuthError, OnvifUnreachable or OnvifError.
    """
    async with _media2(host, port, username, password, timeout, adjust_time, networks) as m2:
        vsc = await m2.configuration(configuration_token)
        options = await m2.options(vsc)
        if not options.supports_color:
            raise MasksUnsupported(
                f"ONVIF device {m2.where} offers no solid-colour masks "
                f"(types: {', '.join(options.types) or 'none'})"
            )
        chosen = pick_mask_color(options.colors, options.color_ranges, preferred=color)
        existing = await m2.masks(vsc)
        mine = [m for m in existing if m.token in ours or _looks_ours(m, chosen)]
        others = [m for m in existing if m not in mine]
        if replace_foreign:
            mine, others = list(existing), []
        _check_limits(polygons, options, len(others), m2.where)
        if _same(mine, polygons, chosen):
            # Already in place (a re-assert after a reconnect): change nothing.
            return AppliedMasks(
                configuration_token=vsc,
                tokens=tuple(m.token for m in mine),
                color=chosen,
                removed=(),
                foreign=tuple(m.token for m in others),
                gapless=True,
            )
        gapless = len(others) + len(mine) + len(polygons) <= options.max_masks
        tokens: list[str] = []
        if gapless:
            for polygon in polygons:
                tokens.append(await m2.create(vsc, polygon, chosen))
            for mask in mine:
                await m2.delete(mask.token)
        else:
            # Not enough free slots to add before removing: update ours in place first, then
            # create or delete the difference.
            for mask, polygon in zip(mine, polygons, strict=False):
                await m2.set(mask.token, vsc, polygon, chosen)
                tokens.append(mask.token)
            for mask in mine[len(polygons) :]:
                await m2.delete(mask.token)
            for polygon in polygons[len(mine) :]:
                tokens.append(await m2.create(vsc, polygon, chosen))
        removed = tuple(m.token for m in mine if m.token not in tokens)
    logger.info(
        "masks on %s:%s (%s): %d created/updated, %d removed, %d foreign left",
        host,
        port,
        vsc,
        len(tokens),
        len(removed),
        len(others),
    )
    return AppliedMasks(
        configuration_token=vsc,
        tokens=tuple(tokens),
        color=chosen,
        removed=removed,
        foreign=tuple(m.token for m in others),
        gapless=gapless,
    )


async def delete_masks(
    host: str,
    port: int,
    username: str,
    password: str,
    tokens: Collection[str],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109
    adjust_time: bool = True,
    networks: Sequence[IPNetwork] | None = None,
) -> None:
    """Delete the masks with these tokens (vms's own, when a camera leaves passthrough)."""
    async with _media2(host, port, username, password, timeout, adjust_time, networks) as m2:
        for token in tokens:
            await m2.delete(token)


def _same(masks: Sequence[CameraMask], polygons: Sequence[OnvifPolygon], color: MaskColor) -> bool:
    if len(masks) != len(polygons):
        return False
    for mask, polygon in zip(masks, polygons, strict=True):
        if not (mask.enabled and mask.type == "Color" and mask.color is not None):
            return False
        if mask.color.distance(color) > _OUR_COLOR_DISTANCE or len(mask.polygon) != len(polygon):
            return False
        if any(
            abs(a - c) > 1e-6 or abs(b - d) > 1e-6
            for (a, b), (c, d) in zip(mask.polygon, polygon, strict=True)
        ):
            return False
    return True


def _looks_ours(mask: CameraMask, color: MaskColor) -> bool:
    return (
        mask.type == "Color"
        and mask.color is not None
        and mask.color.distance(color) <= _OUR_COLOR_DISTANCE
    )


def _check_limits(
    polygons: Sequence[OnvifPolygon], options: MaskOptions, foreign: int, where: str
) -> None:
    if len(polygons) + foreign > options.max_masks:
        raise MaskLimitError(
            f"ONVIF device {where} takes {options.max_masks} masks; {len(polygons)} asked for"
            + (f" beside {foreign} that are not ours" if foreign else "")
        )
    for i, polygon in enumerate(polygons):
        if not 3 <= len(polygon) <= options.max_points:
            raise MaskLimitError(
                f"mask {i} has {len(polygon)} points; ONVIF device {where} takes 3 to "
                f"{options.max_points}"
            )
        if any(not (-1.0 <= x <= 1.0 and -1.0 <= y <= 1.0) for x, y in polygon):
            raise MaskLimitError(f"mask {i} has points outside ONVIF's -1..1 coordinates")
        if options.rectangle_only and not _is_rectangle(polygon):
            raise MaskLimitError(f"ONVIF device {where} takes rectangles only; mask {i} is not")


def _is_rectangle(polygon: OnvifPolygon) -> bool:
    if len(polygon) != 4:
        return False
    xs = sorted({round(x, 9) for x, _ in polygon})
    ys = sorted({round(y, 9) for _, y in polygon})
    return len(xs) == 2 and len(ys) == 2


# -- the service ------------------------------------------------------------------------------


@functools.cache
def _load_document() -> Document:
    """The Media2 WSDL, parsed once per process (functools.cache serialises the first call)."""
    from onvif.settings import DEFAULT_SETTINGS
    from onvif.transport import ASYNC_TRANSPORT

    spec = importlib.util.find_spec("onvif")
    if spec is None or spec.origin is None:
        raise RuntimeError("onvif-zeep-async is not installed")
    # The WSDL imports "onvif.xsd"; resolving it against the package's WSDL directory picks up
    # the tt: schema (and everything it imports) that onvif-zeep-async ships.
    base = Path(spec.origin).parent / "wsdl" / WSDL_PATH.name
    with WSDL_PATH.open("rb") as fh:
        return Document(fh, ASYNC_TRANSPORT, base=str(base), settings=DEFAULT_SETTINGS)


class _Media2:
    """A Media2 service proxy on one device, for the lifetime of one `_media2` block."""

    def __init__(self, where: str, proxy: Any) -> None:
        self.where = where
        self._proxy = proxy
        self._configurations: tuple[VideoSourceConfig, ...] | None = None

    async def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return await getattr(self._proxy, operation)(**kwargs)
        except zeep.exceptions.Fault as exc:
            if not _is_auth_fault(exc) and _not_supported(exc):
                raise MasksUnsupported(
                    f"ONVIF device {self.where} does not support {operation} "
                    f"({exc.message or exc.code})"
                ) from exc
            raise

    async def capabilities(self) -> Any:
        return await self._call("GetServiceCapabilities")

    async def configurations(self) -> tuple[VideoSourceConfig, ...]:
        if self._configurations is None:
            reply = await self._call("GetVideoSourceConfigurations")
            self._configurations = tuple(_vsc(c) for c in reply or [])
        return self._configurations

    async def configuration(self, token: str | None) -> str:
        known = await self.configurations()
        if token is not None:
            if all(c.token != token for c in known):
                have = ", ".join(c.token for c in known) or "none"
                raise OnvifError(
                    f"ONVIF device {self.where} has no video source configuration {token!r} "
                    f"(has: {have})"
                )
            return token
        if len(known) != 1:
            raise OnvifError(
                f"ONVIF device {self.where} has {len(known)} video source configurations; "
                "say which one carries the masks"
            )
        return known[0].token

    async def options(self, vsc: str) -> MaskOptions:
        try:
            capabilities = await self.capabilities()
        except MasksUnsupported:
            capabilities = None  # no GetServiceCapabilities: GetMaskOptions decides
        if getattr(capabilities, "Mask", None) is False:
            raise MasksUnsupported(f"ONVIF device {self.where} has no privacy masks (Media2)")
        return _options(await self._call("GetMaskOptions", ConfigurationToken=vsc), self.where)

    async def masks(self, vsc: str) -> tuple[CameraMask, ...]:
        reply = await self._call("GetMasks", ConfigurationToken=vsc)
        return tuple(_mask(m) for m in reply or [])

    async def create(self, vsc: str, polygon: OnvifPolygon, color: MaskColor) -> str:
        token = await self._call("CreateMask", Mask=_mask_xml(vsc, polygon, color))
        if not token:
            raise OnvifError(f"ONVIF device {self.where} created a mask without a token")
        return str(token)

    async def set(self, token: str, vsc: str, polygon: OnvifPolygon, color: MaskColor) -> None:
        await self._call("SetMask", Mask={**_mask_xml(vsc, polygon, color), "token": token})

    async def delete(self, token: str) -> None:
        await self._call("DeleteMask", Token=token)


@asynccontextmanager
async def _media2(
    host: str,
    port: int,
    username: str,
    password: str,
    time_limit: float,
    adjust_time: bool,
    networks: Sequence[IPNetwork] | None,
) -> AsyncIterator[_Media2]:
    """A Media2 proxy on a connected device; the overall timeout, error mapping and camera
    network fence of `vms.pipeline.onvif._camera` apply (the Media2 XAddr was checked to be on
    the device's own host), and the proxy's HTTP session is always closed."""
    # The package's building blocks for a service it has no WSDL of (imported here, after
    # vms.pipeline.onvif, so their import-time logging set-up stays undone).
    from onvif.client import UsernameDigestTokenDtDiff, ZeepAsyncClient
    from onvif.settings import DEFAULT_SETTINGS
    from onvif.wsa import WsAddressingIfMissingPlugin
    from onvif.zeep_aiohttp import AIOHTTPTransport

    where = f"{host}:{port}"
    async with _camera(
        host, port, username, password, time_limit, adjust_time, networks=networks
    ) as cam:
        xaddr = cam.xaddrs.get(NS_MEDIA2)
        if not xaddr:
            raise MasksUnsupported(f"ONVIF device {where} has no Media2 service")
        # Parsing onvif.xsd is file IO and CPU: off the event loop (once; cached after).
        document = await asyncio.to_thread(_load_document)
        # Cameras use self-signed certificates; the ONVIF package does not verify them either.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=False),
            timeout=aiohttp.ClientTimeout(total=time_limit),
        )
        try:
            client = ZeepAsyncClient(
                wsdl=document,
                wsse=UsernameDigestTokenDtDiff(
                    username, password, dt_diff=cam.dt_diff, use_digest=True
                ),
                transport=AIOHTTPTransport(session=session, verify_ssl=False),
                settings=DEFAULT_SETTINGS,
                plugins=[WsAddressingIfMissingPlugin()],
            )
            yield _Media2(where, client.create_service(BINDING, xaddr))
        finally:
            await session.close()


def _not_supported(exc: zeep.exceptions.Fault) -> bool:
    texts = [getattr(code, "text", str(code)) for code in exc.subcodes or []]
    haystack = " ".join([*texts, str(exc.code or "")]).lower()
    return any(word in haystack for word in ("actionnotsupported", "notsupported", "nomasks"))


def _vsc(raw: Any) -> VideoSourceConfig:
    bounds = getattr(raw, "Bounds", None)
    return VideoSourceConfig(
        token=str(raw.token),
        name=str(getattr(raw, "Name", "") or ""),
        source_token=str(getattr(raw, "SourceToken", "") or ""),
        width=int(getattr(bounds, "width", 0) or 0),
        height=int(getattr(bounds, "height", 0) or 0),
    )


def _options(raw: Any, where: str) -> MaskOptions:
    colors: list[MaskColor] = []
    ranges: list[tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = []
    other_spaces = 0
    color_options = getattr(raw, "Color", None)
    for c in getattr(color_options, "ColorList", None) or []:
        if _is_ycbcr(getattr(c, "Colorspace", None)):
            colors.append(MaskColor(float(c.X), float(c.Y), float(c.Z)))
        else:
            other_spaces += 1
    for r in getattr(color_options, "ColorspaceRange", None) or []:
        if _is_ycbcr(getattr(r, "Colorspace", None)):
            ranges.append(
                (
                    (float(r.X.Min), float(r.X.Max)),
                    (float(r.Y.Min), float(r.Y.Max)),
                    (float(r.Z.Min), float(r.Z.Max)),
                )
            )
        else:
            other_spaces += 1
    if other_spaces and not colors and not ranges:
        raise MasksUnsupported(f"ONVIF device {where} offers mask colours only outside YCbCr")
    return MaskOptions(
        max_masks=int(raw.MaxMasks),
        max_points=int(raw.MaxPoints),
        types=tuple(str(t) for t in raw.Types or []),
        rectangle_only=bool(getattr(raw, "RectangleOnly", False)),
        single_color_only=bool(getattr(raw, "SingleColorOnly", False)),
        colors=tuple(colors),
        color_ranges=tuple(ranges),
    )


def _is_ycbcr(space: Any) -> bool:
    return space is None or str(space).strip() in ("", YCBCR_COLORSPACE)


def _mask(raw: Any) -> CameraMask:
    color = getattr(raw, "Color", None)
    points = getattr(getattr(raw, "Polygon", None), "Point", None) or []
    return CameraMask(
        token=str(raw.token or ""),
        configuration_token=str(raw.ConfigurationToken),
        polygon=tuple((float(p.x), float(p.y)) for p in points),
        type=str(raw.Type),
        color=(
            MaskColor(float(color.X), float(color.Y), float(color.Z))
            if color is not None and _is_ycbcr(getattr(color, "Colorspace", None))
            else None
        ),
        enabled=bool(raw.Enabled),
    )


def _mask_xml(vsc: str, polygon: OnvifPolygon, color: MaskColor) -> dict[str, Any]:
    return {
        "ConfigurationToken": vsc,
        "Polygon": {"Point": [{"x": x, "y": y} for x, y in polygon]},
        "Type": "Color",
        "Color": {"X": color.y, "Y": color.cb, "Z": color.cr, "Colorspace": YCBCR_COLORSPACE},
        "Enabled": True,
    }
