"""Helpers for passthrough tests: a camera registered on the masking rig's ONVIF device."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from registry.models import Camera, RecordingPath
from tests.peers.onvif_device import ONVIF_PASSWORD, ONVIF_USER, MaskingRig
from tests.pipeline.conftest import committed
from vms.core.config import Settings

# A static plan on the 640x360 test footage: an anonymised concave block and a kept window in
# another (what a school camera's plan looks like once drawn: walls of privacy, a kept path).
PLAN: dict[str, Any] = {
    "version": 1,
    "method": "fill",
    "default": "keep",
    "zones": [
        {"type": "polygon", "action": "anonymise",
         "points": [[0.05, 0.05], [0.45, 0.05], [0.45, 0.2], [0.2, 0.2], [0.2, 0.5], [0.05, 0.5]]},
        {"type": "polygon", "action": "anonymise",
         "points": [[0.5, 0.6], [0.9, 0.6], [0.9, 0.95], [0.5, 0.95]]},
    ],
}  # fmt: skip


def onvif_source(rig: MaskingRig) -> dict[str, Any]:
    return {
        "kind": "onvif",
        "host": rig.device.host,
        "port": rig.device.port,
        "username": ONVIF_USER,
        "password": ONVIF_PASSWORD,
        "profile_token": "main",
    }


def passthrough_camera(engine: Engine, rig: MaskingRig, **fields: Any) -> Camera:
    with committed(engine) as f:
        return f.camera(
            source=fields.pop("source", onvif_source(rig)),
            mask_plan=fields.pop("mask_plan", PLAN),
            recording_path=RecordingPath.passthrough,
            **fields,
        )


def passthrough_settings(settings: Settings, **pipeline: Any) -> Settings:
    """Checks every second (the test camera's keyframe interval), a short settle."""
    values = {"passthrough_verify_s": 1.0, "passthrough_settle_s": 5.0} | pipeline
    return settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update=values)})
