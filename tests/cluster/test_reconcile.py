"""The reconcile decision and the configuration digest, pure."""

from __future__ import annotations

import dataclasses

import pytest

from vms.pipeline.cluster.camera import camera_digest
from vms.pipeline.cluster.reconcile import actor_name, camera_of, plan
from vms.pipeline.config import PolicyFlags, SourceSpec, WorkerConfig
from vms.pipeline.desired import DesiredCamera

pytestmark = pytest.mark.nodb

KEY = b"k" * 32
ALLOWED = PolicyFlags(True, True)
BLOCKED = PolicyFlags(False, False, ("camera paused",))


def desired(camera_id: int, policy: PolicyFlags = ALLOWED, **config: object) -> DesiredCamera:
    base = WorkerConfig(
        camera_id=camera_id,
        organisation_id=1,
        mode="live_and_recording",
        source=SourceSpec(kind="rtsp", url=f"rtsp://u:secret@10.0.0.{camera_id}/cam"),
        mask_plan={"version": 1, "default": "anonymise"},
        mask_plan_hash="a" * 64,
        policy=policy,
        data_dir="/srv/vms",
        db_url="postgresql://vms@db/vms",
    )
    return DesiredCamera(
        camera_id=camera_id,
        organisation_id=1,
        expects_recording=True,
        policy=policy,
        config=dataclasses.replace(base, **config),  # type: ignore[arg-type]
    )


def test_actor_names_round_trip() -> None:
    assert camera_of(actor_name(42)) == 42
    assert camera_of("vms-camera-x") is None
    assert camera_of("someone-else") is None


def test_plan_starts_missing_stops_unwanted_with_the_gap_they_leave() -> None:
    broken = DesiredCamera(3, 1, True, ALLOWED, None, error="cannot configure the camera")
    want = {1: desired(1), 2: desired(2, BLOCKED), 3: broken, 5: desired(5)}
    actions = plan(want, running=[1, 2, 3, 4], key=KEY)
    assert actions.start == [5]
    assert [(s.camera_id, s.reason, s.detail) for s in actions.stop] == [
        (2, "policy", "camera paused"),
        (3, "recording_error", "cannot configure the camera"),
        (4, None, None),  # decommissioned: owes no more footage
    ]
    assert set(actions.digests) == {1, 5}


def test_the_digest_follows_the_registry_not_the_node() -> None:
    d = camera_digest(desired(1), KEY)
    assert len(d) == 32
    # Node-local settings (mount point, database URL, timings) do not change it.
    assert camera_digest(desired(1, data_dir="/mnt/other", segment_seconds=2.0), KEY) == d
    # What the registry and the policy say does.
    assert camera_digest(desired(1, mask_plan_hash="b" * 64), KEY) != d
    assert camera_digest(desired(1, PolicyFlags(True, False)), KEY) != d
    other = SourceSpec(kind="rtsp", url="rtsp://u:changed@10.0.0.1/cam")
    assert camera_digest(desired(1, source=other), KEY) != d
    assert camera_digest(None, KEY) != d
    # Keyed: without the installation key a digest says nothing about the password.
    assert camera_digest(desired(1), b"x" * 32) != d
    assert "secret" not in d
