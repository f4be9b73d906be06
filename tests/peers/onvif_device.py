"""A real ONVIF device service for tests: SOAP 1.2 over HTTP on 127.0.0.1, schema-driven by zeep.

Requests are parsed and replies serialised with zeep from the very `devicemgmt.wsdl` and
`media.wsdl` the client package (onvif-zeep-async) ships, so every reply is schema-shaped.
WS-Security UsernameToken (digest and plain text) is checked as a camera would; a bad token gets
a SOAP Fault with subcode `ter:NotAuthorized`. Stream URIs point at the real RTSP test server.

With `media2=True` the device also serves Media2 (from vms's own `media2.wsdl`, the one the
client uses): service capabilities, video source configurations and, given `masks=MaskSupport`,
privacy masks (GetMaskOptions, GetMasks, CreateMask, SetMask, DeleteMask), which it hands to
`on_masks` (the masking test camera draws them). Without `masks` its Media2 has no mask support.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the environment

from sample_streams import RtspServerProcess
from tests.peers.masking_camera import MaskingCameraProcess, camera_problem
from tests.peers.rtsp import SampleClips, require_rtsp_tools

# Located without importing `onvif`: its client module calls logging.basicConfig() on import.
_ONVIF_SPEC = importlib.util.find_spec("onvif")
assert _ONVIF_SPEC is not None, "onvif-zeep-async is not installed"
assert _ONVIF_SPEC.origin is not None
WSDL_DIR = Path(_ONVIF_SPEC.origin).parent / "wsdl"
NS_DEVICE = "http://www.onvif.org/ver10/device/wsdl"
NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"
NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
NS_ERROR = "http://www.onvif.org/ver10/error"
NS_MEDIA2 = "http://www.onvif.org/ver20/media/wsdl"
YCBCR = "http://www.onvif.org/ver10/colorspace/YCbCr"
SERVICE_PATHS = {
    "/onvif/device_service": NS_DEVICE,
    "/onvif/media_service": NS_MEDIA,
    "/onvif/media2_service": NS_MEDIA2,
}
VIDEO_SOURCE_CONFIGURATION = "vsc0"

ONVIF_USER = "admin"
ONVIF_PASSWORD = "onvif-Pa55:w@rd"
DEVICE_INFO = {
    "Manufacturer": "VMS Test Devices",
    "Model": "PeerCam 2",
    "FirmwareVersion": "4.2.1",
    "SerialNumber": "SN-0001",
    "HardwareId": "HW-1",
}
# Spec "PRE_AUTH" operations a device must answer without credentials.
PRE_AUTH = {"GetSystemDateAndTime", "GetCapabilities", "GetServices"}
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class DeviceProfile:
    token: str
    name: str
    width: int
    height: int
    fps: int
    stream_uri: str


@dataclass(frozen=True)
class MaskSupport:
    """What GetMaskOptions reports, and enforces on CreateMask/SetMask."""

    max_masks: int = 4
    max_points: int = 16
    types: tuple[str, ...] = ("Color",)
    rectangle_only: bool = False
    # A ColorList in YCbCr; None offers the whole YCbCr range.
    colors: tuple[tuple[float, float, float], ...] | None = None


@dataclass
class DeviceMask:
    token: str
    configuration: str
    points: list[tuple[float, float]]
    type: str
    color: tuple[float, float, float] | None
    enabled: bool

    def for_camera(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "color": list(self.color or (16.0, 128.0, 128.0)),
            "enabled": self.enabled and self.type == "Color",
        }


class _Fault(Exception):
    def __init__(self, code: str, subcode: str, reason: str, status: int) -> None:
        super().__init__(reason)
        self.code, self.subcode, self.reason, self.status = code, subcode, reason, status


def _fault_xml(fault: _Fault) -> bytes:
    env = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap={"env": NS_SOAP, "ter": NS_ERROR})
    body = etree.SubElement(env, f"{{{NS_SOAP}}}Body")
    node = etree.SubElement(body, f"{{{NS_SOAP}}}Fault")
    code = etree.SubElement(node, f"{{{NS_SOAP}}}Code")
    etree.SubElement(code, f"{{{NS_SOAP}}}Value").text = fault.code
    parent = code
    # ONVIF nests subcodes: "ter:InvalidArgVal/ter:NoProfile" is two levels.
    for subcode in fault.subcode.split("/"):
        parent = etree.SubElement(parent, f"{{{NS_SOAP}}}Subcode")
        etree.SubElement(parent, f"{{{NS_SOAP}}}Value").text = subcode
    reason = etree.SubElement(node, f"{{{NS_SOAP}}}Reason")
    text = etree.SubElement(reason, f"{{{NS_SOAP}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = fault.reason
    return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))


def _not_authorized() -> _Fault:
    # SOAP 1.2 over HTTP maps Sender faults to 400.
    return _Fault("env:Sender", "ter:NotAuthorized", "Sender not Authorized", 400)


def check_username_token(envelope: Any, user: str, password: str, now: datetime) -> bool | None:
    """True/False for a valid/invalid WS-Security UsernameToken, None when there is none."""
    token = envelope.find(f"{{{NS_SOAP}}}Header/{{{NS_WSSE}}}Security/{{{NS_WSSE}}}UsernameToken")
    if token is None:
        return None
    name = token.findtext(f"{{{NS_WSSE}}}Username")
    pw_node = token.find(f"{{{NS_WSSE}}}Password")
    if name != user or pw_node is None:
        return False
    given = (pw_node.text or "").strip()
    if not pw_node.get("Type", "").endswith("#PasswordDigest"):
        return hmac.compare_digest(given.encode(), password.encode())
    nonce_b64 = token.findtext(f"{{{NS_WSSE}}}Nonce") or ""
    created = token.findtext(f"{{{NS_WSU}}}Created") or ""
    try:
        nonce = base64.b64decode(nonce_b64)
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return False
    if created_at.tzinfo is None or abs(now - created_at) > MAX_CLOCK_SKEW:
        return False
    # Digest = Base64(SHA-1(nonce + created + password)), WS-Security UsernameToken Profile 1.0.
    expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest())
    return hmac.compare_digest(given.encode(), expected)


class OnvifDevice:
    """Device + media service on 127.0.0.1:<random port>, served from a thread."""

    def __init__(
        self,
        profiles: list[DeviceProfile],
        *,
        user: str = ONVIF_USER,
        password: str = ONVIF_PASSWORD,
        host: str = "127.0.0.1",
        media2: bool = False,
        masks: MaskSupport | None = None,
        on_masks: Callable[[list[DeviceMask]], None] | None = None,
        advertise_host: str | None = None,
    ) -> None:
        self.profiles = profiles
        # The host the device names in its XAddrs (a hostile device names another one).
        self.advertise_host = advertise_host
        self.user, self.password, self.host = user, password, host
        self.requests: list[str] = []  # operation names, in order: lets tests see what was asked
        self._bindings = {
            NS_DEVICE: _binding("devicemgmt.wsdl", f"{{{NS_DEVICE}}}DeviceBinding"),
            NS_MEDIA: _binding("media.wsdl", f"{{{NS_MEDIA}}}MediaBinding"),
        }
        self.media2 = media2 or masks is not None
        if self.media2:
            self._bindings[NS_MEDIA2] = _media2_binding()
        self.mask_support = masks
        self.on_masks = on_masks
        self.masks: dict[str, DeviceMask] = {}
        self._next_mask = 1
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> OnvifDevice:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        return f"http://{self.advertise_host or self.host}:{self.port}{path}"

    # -- SOAP ---------------------------------------------------------------------------------

    def handle_soap(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            envelope = etree.fromstring(body)
            op_node = envelope.find(f"{{{NS_SOAP}}}Body/*")
            if op_node is None:
                raise _Fault("env:Sender", "ter:InvalidArgs", "Empty SOAP body", 400)
            qname = etree.QName(op_node)
            binding = self._bindings.get(qname.namespace or "")
            if binding is None or SERVICE_PATHS.get(path) != qname.namespace:
                raise _Fault("env:Receiver", "ter:ActionNotSupported", qname.localname, 500)
            name = qname.localname
            with self._lock:
                self.requests.append(name)
            authorised = check_username_token(envelope, self.user, self.password, datetime.now(UTC))
            if authorised is False or (authorised is None and name not in PRE_AUTH):
                raise _not_authorized()
            handler: Callable[[Any], dict[str, Any]] | None = getattr(self, f"op_{name}", None)
            try:
                operation = binding.get(name)
            except ValueError:
                operation = None
            if handler is None or operation is None:
                raise _Fault("env:Receiver", "ter:ActionNotSupported", name, 500)
            with self._lock:  # zeep objects are not documented as thread-safe
                request = operation.input.deserialize(envelope)
                reply = operation.output.serialize(**handler(request))
                return 200, etree.tostring(reply.content, xml_declaration=True, encoding="utf-8")
        except _Fault as fault:
            return fault.status, _fault_xml(fault)
        except etree.XMLSyntaxError:
            return 400, _fault_xml(_Fault("env:Sender", "ter:WellFormed", "Bad XML", 400))

    # Operation handlers: keyword arguments for the zeep output message.

    def op_GetSystemDateAndTime(self, _request: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "SystemDateAndTime": {
                "DateTimeType": "NTP",
                "DaylightSavings": False,
                "TimeZone": {"TZ": "UTC0"},
                "UTCDateTime": {
                    "Time": {"Hour": now.hour, "Minute": now.minute, "Second": now.second},
                    "Date": {"Year": now.year, "Month": now.month, "Day": now.day},
                },
            }
        }

    def op_GetCapabilities(self, _request: Any) -> dict[str, Any]:
        return {
            "Capabilities": {
                "Device": {"XAddr": self.url("/onvif/device_service")},
                "Media": {
                    "XAddr": self.url("/onvif/media_service"),
                    "StreamingCapabilities": {
                        "RTPMulticast": False,
                        "RTP_TCP": True,
                        "RTP_RTSP_TCP": True,
                    },
                },
            }
        }

    def op_GetServices(self, _request: Any) -> dict[str, Any]:
        # Media2 is found through GetServices only: GetCapabilities has no element for it.
        services = [(NS_DEVICE, "/onvif/device_service"), (NS_MEDIA, "/onvif/media_service")]
        if self.media2:
            services.append((NS_MEDIA2, "/onvif/media2_service"))
        return {
            "Service": [
                {"Namespace": ns, "XAddr": self.url(path), "Version": {"Major": 2, "Minor": 60}}
                for ns, path in services
            ]
        }

    def op_GetDeviceInformation(self, _request: Any) -> dict[str, Any]:
        return dict(DEVICE_INFO)

    def op_GetProfiles(self, _request: Any) -> dict[str, Any]:
        return {"Profiles": [_profile_xml_dict(p) for p in self.profiles]}

    def _profile(self, request: Any) -> DeviceProfile:
        token = request.ProfileToken if hasattr(request, "ProfileToken") else request
        for profile in self.profiles:
            if profile.token == token:
                return profile
        raise _Fault("env:Sender", "ter:InvalidArgVal/ter:NoProfile", "No such profile", 400)

    def op_GetStreamUri(self, request: Any) -> dict[str, Any]:
        return {"MediaUri": _media_uri(self._profile(request).stream_uri)}

    def op_GetSnapshotUri(self, request: Any) -> dict[str, Any]:
        profile = self._profile(request)
        return {"MediaUri": _media_uri(self.url(f"/onvif/snapshot/{profile.token}.jpg"))}

    # -- Media2 --------------------------------------------------------------------------------

    def op_GetServiceCapabilities(self, _request: Any) -> dict[str, Any]:
        return {
            "Capabilities": {
                "ProfileCapabilities": {"MaximumNumberOfProfiles": len(self.profiles)},
                "StreamingCapabilities": {"RTSPStreaming": True, "RTP_RTSP_TCP": True},
                "SnapshotUri": True,
                "OSD": False,
                "Mask": self.mask_support is not None,
                "SourceMask": False,
            }
        }

    def op_GetVideoSourceConfigurations(self, _request: Any) -> dict[str, Any]:
        return {"Configurations": [_video_source_configuration()]}

    def _supported(self) -> MaskSupport:
        if self.mask_support is None:
            raise _Fault("env:Receiver", "ter:ActionNotSupported", "No privacy masks", 500)
        return self.mask_support

    def _configuration(self, token: Any) -> str:
        if token != VIDEO_SOURCE_CONFIGURATION:
            raise _Fault("env:Sender", "ter:InvalidArgVal/ter:NoConfig", "No such config", 400)
        return str(token)

    def op_GetMaskOptions(self, request: Any) -> dict[str, Any]:
        support = self._supported()
        self._configuration(_part(request, "ConfigurationToken"))
        if support.colors is None:
            full = {"Min": 0.0, "Max": 255.0}
            color: dict[str, Any] = {
                "ColorspaceRange": [{"X": full, "Y": full, "Z": full, "Colorspace": YCBCR}]
            }
        else:
            color = {
                "ColorList": [{"X": c[0], "Y": c[1], "Z": c[2], "Colorspace": YCBCR}
                              for c in support.colors]
            }  # fmt: skip
        return {
            "Options": {
                "MaxMasks": support.max_masks,
                "MaxPoints": support.max_points,
                "Types": list(support.types),
                "Color": color,
                "RectangleOnly": support.rectangle_only,
                "SingleColorOnly": False,
            }
        }

    def op_GetMasks(self, request: Any) -> dict[str, Any]:
        self._supported()
        masks = list(self.masks.values())
        if getattr(request, "Token", None):
            masks = [m for m in masks if m.token == request.Token]
            if not masks:
                raise _Fault("env:Sender", "ter:InvalidArgVal/ter:NoConfig", "No such mask", 400)
        if getattr(request, "ConfigurationToken", None):
            masks = [m for m in masks if m.configuration == request.ConfigurationToken]
        return {"Masks": [_mask_xml(m) for m in masks]}

    def _parse_mask(self, raw: Any, token: str) -> DeviceMask:
        support = self._supported()
        points = [(float(p.x), float(p.y)) for p in raw.Polygon.Point]
        if not 3 <= len(points) <= support.max_points:
            raise _Fault("env:Sender", "ter:InvalidArgVal/ter:InvalidPolygon", "Points", 400)
        if any(not (-1.0 <= x <= 1.0 and -1.0 <= y <= 1.0) for x, y in points):
            raise _Fault("env:Sender", "ter:InvalidArgVal/ter:InvalidPolygon", "Range", 400)
        if support.rectangle_only and (
            len(points) != 4 or len({x for x, _ in points}) != 2 or len({y for _, y in points}) != 2
        ):
            raise _Fault("env:Sender", "ter:InvalidArgVal/ter:InvalidPolygon", "Rectangle", 400)
        if raw.Type not in support.types:
            raise _Fault("env:Sender", "ter:InvalidArgVal/ter:InvalidType", "Type", 400)
        color = None
        if raw.Color is not None:
            color = (float(raw.Color.X), float(raw.Color.Y), float(raw.Color.Z))
            if support.colors is not None and color not in support.colors:
                raise _Fault("env:Sender", "ter:InvalidArgVal/ter:InvalidColor", "Color", 400)
        return DeviceMask(
            token=token,
            configuration=self._configuration(raw.ConfigurationToken),
            points=points,
            type=str(raw.Type),
            color=color,
            enabled=bool(raw.Enabled),
        )

    def op_CreateMask(self, request: Any) -> dict[str, Any]:
        support = self._supported()
        if len(self.masks) >= support.max_masks:
            raise _Fault("env:Receiver", "ter:Action/ter:MaxMasks", "Too many masks", 500)
        token = f"mask{self._next_mask}"
        self._next_mask += 1
        self.masks[token] = self._parse_mask(_part(request, "Mask"), token)
        self._masks_changed()
        return {"Token": token}

    def op_SetMask(self, request: Any) -> dict[str, Any]:
        mask = _part(request, "Mask")
        token = mask.token
        if token not in self.masks:
            raise _Fault("env:Sender", "ter:InvalidArgVal/ter:NoConfig", "No such mask", 400)
        self.masks[token] = self._parse_mask(mask, token)
        self._masks_changed()
        return {}

    def op_DeleteMask(self, request: Any) -> dict[str, Any]:
        self._supported()
        if self.masks.pop(_part(request, "Token"), None) is None:
            raise _Fault("env:Sender", "ter:InvalidArgVal/ter:NoConfig", "No such mask", 400)
        self._masks_changed()
        return {}

    def _masks_changed(self) -> None:
        if self.on_masks is not None:
            self.on_masks(list(self.masks.values()))

    def factory_reset_masks(self) -> None:
        """Forget every mask, as a firmware reset does (GetMasks answers none after it)."""
        with self._lock:
            self.masks.clear()


def _part(request: Any, name: str) -> Any:
    # zeep hands a request with a single part over as that part's value.
    return getattr(request, name) if hasattr(request, name) else request


def _media2_binding() -> Any:
    # The very document the client uses (vms.pipeline.media2): one WSDL for both ends.
    from vms.pipeline.media2 import BINDING, _load_document

    client = zeep.Client(_load_document())  # type: ignore[no-untyped-call]
    return client.wsdl.bindings[BINDING]


def _video_source_configuration() -> dict[str, Any]:
    return {
        "token": VIDEO_SOURCE_CONFIGURATION,
        "Name": "VideoSource",
        "UseCount": 2,
        "SourceToken": "vs0",
        "Bounds": {"x": 0, "y": 0, "width": 1280, "height": 720},
    }


def _mask_xml(m: DeviceMask) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token": m.token,
        "ConfigurationToken": m.configuration,
        "Polygon": {"Point": [{"x": x, "y": y} for x, y in m.points]},
        "Type": m.type,
        "Enabled": m.enabled,
    }
    if m.color is not None:
        out["Color"] = {"X": m.color[0], "Y": m.color[1], "Z": m.color[2], "Colorspace": YCBCR}
    return out


def _binding(wsdl_name: str, binding_name: str) -> Any:
    client = zeep.Client(str(WSDL_DIR / wsdl_name))  # type: ignore[no-untyped-call]
    return client.wsdl.bindings[binding_name]


def _media_uri(uri: str) -> dict[str, Any]:
    return {
        "Uri": uri,
        "InvalidAfterConnect": False,
        "InvalidAfterReboot": False,
        "Timeout": timedelta(0),
    }


def _profile_xml_dict(p: DeviceProfile) -> dict[str, Any]:
    return {
        "token": p.token,
        "fixed": True,
        "Name": p.name,
        "VideoSourceConfiguration": {
            "token": "vsc0",
            "Name": "VideoSource",
            "UseCount": 2,
            "SourceToken": "vs0",
            "Bounds": {"x": 0, "y": 0, "width": 1280, "height": 720},
        },
        "VideoEncoderConfiguration": {
            "token": f"vec-{p.token}",
            "Name": f"Encoder {p.name}",
            "UseCount": 1,
            "Encoding": "H264",
            "Resolution": {"Width": p.width, "Height": p.height},
            "Quality": 5.0,
            "RateControl": {"FrameRateLimit": p.fps, "EncodingInterval": 1, "BitrateLimit": 2048},
            "H264": {"GovLength": p.fps, "H264Profile": "High"},
            "Multicast": {
                "Address": {"Type": "IPv4", "IPv4Address": "0.0.0.0"},
                "Port": 0,
                "TTL": 1,
                "AutoStart": False,
            },
            "SessionTimeout": timedelta(seconds=60),
        },
    }


def _handler_for(device: OnvifDevice) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, payload = device.handle_soap(self.path, self.rfile.read(length))
            self._reply(status, "application/soap+xml; charset=utf-8", payload)

        def do_GET(self) -> None:
            if self.path.startswith("/onvif/snapshot/"):
                self._reply(200, "image/jpeg", _TINY_JPEG)
            else:
                self._reply(404, "text/plain", b"not found")

        def _reply(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean; `device.requests` records what was asked

    return Handler


# A valid 1x1 grey JPEG, enough for a client that fetches the snapshot URI.
_TINY_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwc"
    "KDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAA"
    "AAAAAAAAAAD/2gAIAQEAAD8AKp//2Q=="
)


# -- fixtures -------------------------------------------------------------------------------


def device_profiles(rtsp: RtspServerProcess) -> list[DeviceProfile]:
    """A sub stream (640x360) and a main stream (1280x720) served by `rtsp`."""
    return [
        DeviceProfile("sub", "SubStream", 640, 360, 25, rtsp.url("/real360")),
        DeviceProfile("main", "MainStream", 1280, 720, 25, rtsp.url("/real720")),
    ]


@pytest.fixture(scope="session")
def onvif_device(rtsp_auth_server: RtspServerProcess) -> Iterator[OnvifDevice]:
    """ONVIF device whose profiles stream from the credential-protected RTSP server.

    Like a real camera, the RTSP side takes the same user and password as ONVIF.
    """
    if (rtsp_auth_server.user, rtsp_auth_server.password) != (ONVIF_USER, ONVIF_PASSWORD):
        pytest.fail("rtsp_auth_server must use the ONVIF credentials", pytrace=False)
    device = OnvifDevice(device_profiles(rtsp_auth_server)).start()
    yield device
    device.stop()


# -- a camera that masks, behind a device with Media2 masks ----------------------------------

# vms's default mask colour in ONVIF YCbCr, for tests that configure masks on the device directly.
TEST_MASK_COLOR = (100.0, 200.0, 200.0)


@dataclass
class MaskingRig:
    """A masking test camera and the ONVIF device in front of it: masks created through Media2
    are drawn by the camera."""

    camera: MaskingCameraProcess
    device: OnvifDevice
    size: tuple[int, int]

    def url(self) -> str:
        return self.camera.url()

    def set_masks(
        self,
        polygons: Sequence[Sequence[tuple[float, float]]],
        color: tuple[float, float, float] = TEST_MASK_COLOR,
    ) -> list[str]:
        """Put masks on the device directly, as the camera's own web page would; returns tokens."""
        with self.device._lock:
            tokens = []
            for points in polygons:
                token = f"mask{self.device._next_mask}"
                self.device._next_mask += 1
                self.device.masks[token] = DeviceMask(
                    token, VIDEO_SOURCE_CONFIGURATION, list(points), "Color", color, True
                )
                tokens.append(token)
            self.device._masks_changed()
        return tokens

    def forget_masks(self, *, keep_reporting: bool = False) -> None:
        """Firmware reset: the camera stops drawing masks and GetMasks answers none. With
        `keep_reporting` the device still lists them (a camera that no longer draws what it
        claims to)."""
        if not keep_reporting:
            self.device.factory_reset_masks()
        self.camera.forget()


def start_masking_rig(
    clips: SampleClips,
    *,
    size: tuple[int, int] = (640, 360),
    masks: MaskSupport | None = MaskSupport(),
    media2: bool = True,
    keyint: int = 25,
    extra_profiles: Sequence[DeviceProfile] = (),
) -> MaskingRig:
    """Start a camera (looping the sample footage at `size`) and its device; caller stops both.
    `extra_profiles` (e.g. a substream) are listed by the device after the masked "main"."""
    source = {(640, 360): clips.real_360, (1280, 720): clips.real_720}.get(size)
    if source is None:
        raise ValueError(f"no sample clip at {size}")
    camera = MaskingCameraProcess(source, size=size, keyint=keyint).start()
    profile = DeviceProfile("main", "MainStream", size[0], size[1], 25, camera.url())
    device = OnvifDevice(
        [profile, *extra_profiles],
        media2=media2,
        masks=masks,
        on_masks=lambda current: camera.set_masks([m.for_camera() for m in current]),
    ).start()
    return MaskingRig(camera, device, size)


@pytest.fixture
def masking_rig_factory(sample_clips: SampleClips) -> Iterator[Callable[..., MaskingRig]]:
    """Start camera + device pairs (keyword arguments of `start_masking_rig`); all stopped after."""
    require_rtsp_tools()
    problem = camera_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    started: list[MaskingRig] = []

    def make(**kwargs: Any) -> MaskingRig:
        rig = start_masking_rig(sample_clips, **kwargs)
        started.append(rig)
        return rig

    yield make
    for rig in started:
        rig.device.stop()
        rig.camera.stop()


@pytest.fixture
def masking_rig(masking_rig_factory: Callable[..., MaskingRig]) -> MaskingRig:
    """A 640x360 masking camera behind a device with Media2 masks (4 masks, 16 points)."""
    return masking_rig_factory()
