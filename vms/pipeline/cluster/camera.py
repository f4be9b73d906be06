"""One camera's desired state, as a camera actor reads it for itself, and the digest the
reconcile loop compares to tell an actor that its camera changed.

The digest covers what comes from the registry and the policy (source, mode, mask plan,
policy flags), not the node's own settings (data dir, timings), so nodes with different mount
points agree on it. It is an HMAC under the installation key: the source (credentials
included) goes into it, and a plain hash of a password would be a guessing oracle for anyone
who can read the Ray dashboard.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json

from sqlalchemy.orm import Session

from permits.policy import policy_for
from registry import passthrough
from registry import service as registry_service
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.pipeline.desired import DesiredCamera, desired_camera


def read_camera(
    *, session: Session, settings: Settings, box: SecretBox, camera_id: int, at: dt.datetime
) -> DesiredCamera | None:
    """The camera's desired worker now; None once it is decommissioned or gone."""
    camera = registry_service.get_camera(session=session, camera_id=camera_id)
    if camera is None or camera.status.value == "decommissioned":
        return None
    (facts,) = registry_service.facts_many(session=session, cameras=[camera])
    # A passthrough camera's record decides whether it runs as passthrough (read_desired too).
    state = passthrough.state_of(session=session, camera_id=camera.id)
    return desired_camera(
        camera=camera, policy=policy_for(facts, at), settings=settings, box=box, state=state
    )


def camera_digest(desired: DesiredCamera | None, key: bytes) -> str:
    """What the camera should run as, in 32 hex digits (equal on every node)."""
    if desired is None:
        payload: object = None
    else:
        config = desired.config
        payload = {
            "camera": desired.camera_id,
            "organisation": desired.organisation_id,
            "policy": [
                desired.policy.may_view_live,
                desired.policy.may_record,
                list(desired.policy.reasons),
            ],
            "error": desired.error,
            "config": None
            if config is None
            else {
                "mode": config.mode,
                "source": dataclasses.asdict(config.source),
                "plan": config.mask_plan_hash,
                "recording_path": config.recording_path,
                "record": [config.record_fps, config.record_height],
            },
        }
    text = json.dumps(payload, sort_keys=True, default=str).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]
