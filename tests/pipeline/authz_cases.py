"""Authorisation cases for the pipeline routes.

The matrix app runs without background services, so live view and snapshots answer 409
("pipeline not running") once authorisation has passed: that status is what an allowed caller
gets, and it differs from the 401/403/404 of everyone else. The ONVIF probe and the mask preview
talk to a port where nothing listens (422 and 409 for allowed callers).
"""

from __future__ import annotations

from typing import Any

from tests.authz import Ctx, Req, RouteCase, roles
from tests.peers.rtsp import unused_port

LIVE = roles("admin", "facility_manager", "operator")  # dpo: no live view; police: never
STATUS = roles("admin", "facility_manager", "operator", "dpo")
RECORDINGS = roles("admin", "facility_manager", "operator", "dpo")
PREVIEW = roles("admin", "facility_manager", "dpo")
PROBE = roles("admin", "facility_manager")


def _camera(ctx: Ctx, **extra: Any) -> Req:
    camera = ctx.factory.camera(
        ctx.owner, source={"kind": "rtsp", "url": f"rtsp://127.0.0.1:{unused_port()}/cam"}
    )
    return Req(path_params={"camera_id": camera.id}, **extra)


def _video(ctx: Ctx) -> Req:
    camera = ctx.factory.camera(ctx.owner)
    segment = ctx.factory.segment(camera, minutes=1, data_dir=ctx.settings.data_dir)
    return Req(path_params={"segment_id": segment.id})


def _recordings(ctx: Ctx) -> Req:
    camera = ctx.factory.camera(ctx.owner)
    ctx.factory.segment(camera, minutes=1)
    return Req(params={"camera_id": camera.id})


CASES = [
    RouteCase("GET", "/api/v1/cameras/{camera_id}/status", 200, STATUS, _camera),
    RouteCase("GET", "/api/v1/cameras/{camera_id}/live.mjpeg", 409, LIVE, _camera),
    RouteCase("GET", "/api/v1/cameras/{camera_id}/snapshot.jpg", 409, LIVE, _camera),
    RouteCase("POST", "/api/v1/cameras/{camera_id}/live-ticket", 200, LIVE, _camera),
    RouteCase("GET", "/api/v1/cameras/{camera_id}/mask-preview.png", 409, PREVIEW, _camera),
    RouteCase(
        "POST",
        "/api/v1/cameras/{camera_id}/mask-preview",
        409,
        PREVIEW,
        lambda ctx: _camera(ctx, json={"plan": {"default": "anonymise"}}),
    ),
    RouteCase("GET", "/api/v1/recordings", 200, RECORDINGS, _recordings),
    RouteCase("GET", "/api/v1/recordings/{segment_id}/video", 200, RECORDINGS, _video),
    RouteCase(
        "POST",
        "/api/v1/onvif/probe",
        422,
        PROBE,
        lambda ctx: Req(json={"host": "127.0.0.1", "port": unused_port(), "username": "admin"}),
        other_org=None,
    ),
    RouteCase("GET", "/metrics", 200, roles("admin"), other_org=None),
]
