"""A camera's ONVIF device (or whoever answers as one) cannot steer the server: no stream URI
that is not rtsp:// on the device itself, no service addresses on other hosts, no probes
outside the camera networks, and no remote text in any error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from sample_streams import RtspServerProcess
from tests.factories import Factory
from tests.peers.onvif_device import ONVIF_PASSWORD, ONVIF_USER, DeviceProfile, OnvifDevice
from vms.core.models import AuditEntry
from vms.pipeline import onvif

SECRET_BODY = "TOP-SECRET intranet page: salaries.xlsx"
HOSTILE_URIS = [
    "file:///etc/passwd",
    "/var/lib/vms/data/recordings/1/2025/01/01/00/1.mp4",
    "http://127.0.0.1:5432/admin",
    "rtsp://10.20.30.40:554/stream",
    "rtsps://127.0.0.2/stream",
]


def _device(uris: list[str], **kwargs: object) -> OnvifDevice:
    profiles = [
        DeviceProfile(f"p{i}", f"Profile {i}", 640, 360, 25, uri) for i, uri in enumerate(uris)
    ]
    return OnvifDevice(profiles, **kwargs).start()  # type: ignore[arg-type]


@pytest.fixture
def hostile_device() -> Iterator[OnvifDevice]:
    device = _device(HOSTILE_URIS)
    yield device
    device.stop()


@pytest.mark.parametrize("index", range(len(HOSTILE_URIS)))
def test_stream_uris_off_the_device_are_refused(hostile_device: OnvifDevice, index: int) -> None:
    with pytest.raises(onvif.OnvifRedirected, match="stream URI") as caught:
        asyncio.run(
            onvif.resolve_stream_uri(
                hostile_device.host,
                hostile_device.port,
                ONVIF_USER,
                ONVIF_PASSWORD,
                f"p{index}",
                timeout=5,
            )
        )
    assert HOSTILE_URIS[index] not in str(caught.value)


def test_an_allow_listed_stream_host_is_followed(hostile_device: OnvifDevice) -> None:
    uri = asyncio.run(
        onvif.resolve_stream_uri(
            hostile_device.host,
            hostile_device.port,
            ONVIF_USER,
            ONVIF_PASSWORD,
            "p3",
            timeout=5,
            stream_hosts=("10.20.30.40",),
        )
    )
    assert uri.startswith("rtsp://admin:")
    assert uri.endswith("@10.20.30.40:554/stream")


def test_a_probe_lists_no_hostile_stream_uri(
    hostile_device: OnvifDevice, rtsp_server: RtspServerProcess
) -> None:
    found = asyncio.run(
        onvif.probe(hostile_device.host, hostile_device.port, ONVIF_USER, ONVIF_PASSWORD)
    )
    assert [p.stream_uri for p in found.profiles] == [None] * len(HOSTILE_URIS)


def test_service_addresses_on_another_host_are_not_followed(
    rtsp_server: RtspServerProcess,
) -> None:
    device = _device([rtsp_server.url("/real360")], advertise_host="127.0.0.2")
    try:
        with pytest.raises(onvif.OnvifRedirected, match="another host"):
            asyncio.run(onvif.probe(device.host, device.port, ONVIF_USER, ONVIF_PASSWORD))
        # It stopped at the service list: nothing was asked of the other host.
        assert device.requests[-1] in ("GetServices", "GetCapabilities")
    finally:
        device.stop()


class _NotOnvif(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = SECRET_BODY.encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def intranet() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotOnvif)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _probe(client: TestClient, headers: dict[str, str], host: str, port: int) -> dict[str, str]:
    r = client.post(
        "/api/v1/onvif/probe",
        headers=headers,
        json={"host": host, "port": port, "username": "admin", "password": "x"},
    )
    assert r.status_code == 422, r.text
    [item] = r.json()["detail"]
    assert isinstance(item, dict)
    return item


def test_probe_errors_are_classified_without_the_remote_text(
    client: TestClient, factory: Factory, session: Session, intranet: int
) -> None:
    from tests.peers.rtsp import unused_port

    fm = factory.user("facility_manager")
    not_onvif = _probe(client, fm.headers, "127.0.0.1", intranet)
    assert not_onvif["code"] == "onvif_not_onvif"
    assert not_onvif["msg"] == f"127.0.0.1:{intranet} does not answer as an ONVIF device"
    refused = _probe(client, fm.headers, "127.0.0.1", unused_port())
    assert refused["code"] == "onvif_refused"
    for host in ("169.254.169.254", "8.8.8.8", "[2001:db8::1]".strip("[]")):
        outside = _probe(client, fm.headers, host, 80)
        assert outside["code"] == "onvif_not_allowed", outside
        assert "camera networks" in outside["msg"]
    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "onvif.probe_failed").order_by(AuditEntry.seq)
    ).all()
    assert [(e.actor_id, e.details["kind"]) for e in entries] == [
        (fm.user.id, "not_onvif"),
        (fm.user.id, "refused"),
        (fm.user.id, "not_allowed"),
        (fm.user.id, "not_allowed"),
        (fm.user.id, "not_allowed"),
    ]
    assert all(SECRET_BODY not in str(e.details) for e in entries)
