"""A real ONVIF device service for tests: SOAP 1.2 over HTTP on 127.0.0.1, schema-driven by zeep.

Requests are parsed and replies serialised with zeep from the very `devicemgmt.wsdl` and
`media.wsdl` the client package (onvif-zeep-async) ships, so every reply is schema-shaped.
WS-Security UsernameToken (digest and plain text) is checked as a camera would; a bad token gets
a SOAP Fault with subcode `ter:NotAuthorized`. Stream URIs point at the real RTSP test server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the environment

from sample_streams import RtspServerProcess

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
    ) -> None:
        self.profiles = profiles
        self.user, self.password, self.host = user, password, host
        self.requests: list[str] = []  # operation names, in order: lets tests see what was asked
        self._bindings = {
            NS_DEVICE: _binding("devicemgmt.wsdl", f"{{{NS_DEVICE}}}DeviceBinding"),
            NS_MEDIA: _binding("media.wsdl", f"{{{NS_MEDIA}}}MediaBinding"),
        }
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
        return f"http://{self.host}:{self.port}{path}"

    # -- SOAP ---------------------------------------------------------------------------------

    def handle_soap(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            envelope = etree.fromstring(body)
            op_node = envelope.find(f"{{{NS_SOAP}}}Body/*")
            if op_node is None:
                raise _Fault("env:Sender", "ter:InvalidArgs", "Empty SOAP body", 400)
            qname = etree.QName(op_node)
            service_ns = {"/onvif/device_service": NS_DEVICE, "/onvif/media_service": NS_MEDIA}
            binding = self._bindings.get(qname.namespace or "")
            if binding is None or service_ns.get(path) != qname.namespace:
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
        return {
            "Service": [
                {
                    "Namespace": NS_DEVICE,
                    "XAddr": self.url("/onvif/device_service"),
                    "Version": {"Major": 2, "Minor": 60},
                },
                {
                    "Namespace": NS_MEDIA,
                    "XAddr": self.url("/onvif/media_service"),
                    "Version": {"Major": 2, "Minor": 60},
                },
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
