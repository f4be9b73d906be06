"""What should run: the registry and each camera's policy turned into worker configurations.

Read once per registry poll for every camera in service (two queries, however many cameras):
a camera whose configuration changed gets a fresh worker, one whose policy flags alone changed
gets them pushed, and one whose policy allows neither live view nor recording gets no worker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from masking import plan_hash
from permits.policy import Policy, policy_for
from registry import passthrough
from registry import service as registry_service
from registry.schemas import CameraMode, SourceKind
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.pipeline.config import ANONYMISE_ALL, PolicyFlags, SourceSpec, WorkerConfig
from vms.pipeline.status import clean_error

if TYPE_CHECKING:
    from registry.models import Camera, PassthroughState

logger = logging.getLogger(__name__)


@dataclass
class DesiredCamera:
    camera_id: int
    organisation_id: int
    expects_recording: bool
    policy: PolicyFlags
    config: WorkerConfig | None  # None when the camera cannot run (a config error)
    error: str | None = None
    # A passthrough camera that runs as transcode (or not at all): why, from its record.
    passthrough_failed: str | None = None

    def why_not(self) -> str:
        """Why no worker runs (for logs)."""
        if self.config is None:
            return self.error or "configuration error"
        return "; ".join(self.policy.reasons) or "policy"


def build_source(camera: Camera, box: SecretBox, settings: Settings) -> SourceSpec:
    """The worker's view of a registered camera's source (credentials decrypted)."""
    kind = camera.source_kind
    networks = settings.pipeline.camera_networks
    stream_hosts = settings.pipeline.onvif_stream_hosts
    if kind is SourceKind.rtsp:
        url = registry_service.stream_url(camera=camera, box=box)
        return SourceSpec(kind="rtsp", url=url, networks=networks)
    if kind is SourceKind.onvif:
        user, password = registry_service.source_credentials(camera=camera, box=box)
        return SourceSpec(
            kind="onvif",
            onvif_host=camera.source_host,
            onvif_port=camera.source_port,
            username=user,
            password=password,
            profile_token=camera.source_profile_token,
            live_profile_token=camera.source_live_profile_token,
            networks=networks,
            stream_hosts=stream_hosts,
        )
    return SourceSpec(kind="file", url=camera.source_path, realtime=True, loop=True)


def effective_plan(
    camera: Camera, *, masking_required: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """The plan a worker (or a preview) applies and its hash: where masking is required, a
    camera without a plan, or with one that keeps every pixel, anonymises every pixel (fail
    closed: such a camera shows nothing identifiable; the policy also blocks the second kind)."""
    if masking_required and not registry_service.plan_masks(camera=camera):
        return ANONYMISE_ALL, plan_hash(ANONYMISE_ALL)
    return camera.mask_plan, camera.mask_plan_hash


PASSTHROUGH_BLOCKED = "passthrough could not be verified and the installation blocks such cameras"


def build_config(
    *,
    camera: Camera,
    policy: Policy,
    settings: Settings,
    box: SecretBox,
    overrides: dict[str, Any] | None = None,
    state: PassthroughState | None = None,
) -> WorkerConfig:
    """The frozen config a worker for `camera` gets under `policy` (and, for a passthrough
    camera, its verification record: a failed one records through transcoding, or not at all)."""
    p = settings.pipeline
    plan, digest = effective_plan(camera, masking_required=policy.masking_required)
    runs_as = passthrough.runs_as(camera, state, digest, p.passthrough_fallback)
    flags = _flags(policy)
    if runs_as == "blocked":
        flags = PolicyFlags(False, False, (*flags.reasons, PASSTHROUGH_BLOCKED))
    models = settings.resolved_models_dir
    config = WorkerConfig(
        camera_id=camera.id,
        organisation_id=camera.organisation_id,
        mode=camera.mode.value,
        source=build_source(camera, box, settings),
        mask_plan=plan,
        mask_plan_hash=digest,
        policy=flags,
        data_dir=str(settings.data_dir.resolve()),
        db_url=settings.db_url,
        segment_seconds=p.segment_seconds,
        open_timeout_s=p.open_timeout_s,
        read_timeout_s=p.read_timeout_s,
        stall_seconds=p.stall_seconds,
        reconnect_initial_s=p.backoff_initial_s,
        reconnect_max_s=p.backoff_max_s,
        jpeg_quality=p.jpeg_quality,
        live_fps=p.live_fps,
        models_dir=str(models) if models is not None else None,
        encoder_preset=p.encoder_preset,
        encoder_crf=p.encoder_crf,
        encoder_threads=p.encoder_threads,
        decoder_threads=p.decoder_threads,
        frame_queue=p.frame_queue,
        frame_batch=p.frame_batch,
        record_fps=camera.record_fps,
        record_height=camera.record_height,
        recording_path="passthrough" if runs_as == "passthrough" else "transcode",
        passthrough_verify_s=p.passthrough_verify_s,
        passthrough_settle_s=p.passthrough_settle_s,
    )
    return dataclasses.replace(config, **(overrides or {}))


def _failure_text(state: PassthroughState | None) -> str:
    if state is None:
        return "passthrough stopped"
    reason, detail = state.reason or state.status.value, state.detail or ""
    return detail if detail.startswith(reason) else f"{reason}: {detail}".rstrip(": ")


def _flags(policy: Policy) -> PolicyFlags:
    return PolicyFlags(policy.may_view_live, policy.may_record, tuple(policy.reasons))


def desired_camera(
    *,
    camera: Camera,
    policy: Policy,
    settings: Settings,
    box: SecretBox,
    overrides: dict[str, Any] | None = None,
    state: PassthroughState | None = None,
) -> DesiredCamera:
    flags = _flags(policy)
    desired = DesiredCamera(
        camera_id=camera.id,
        organisation_id=camera.organisation_id,
        expects_recording=camera.mode is not CameraMode.live,
        policy=flags,
        config=None,
    )
    try:
        desired.config = build_config(
            camera=camera,
            policy=policy,
            settings=settings,
            box=box,
            overrides=overrides,
            state=state,
        )
        desired.policy = desired.config.policy
        if (
            camera.recording_path == "passthrough"
            and desired.config.recording_path != "passthrough"
        ):
            desired.passthrough_failed = _failure_text(state)
    except Exception as exc:
        # One camera's bad record (an undecryptable secret, say) must not stop the others.
        desired.error = clean_error(f"cannot configure the camera: {type(exc).__name__}")
        logger.warning("camera %s: %s", camera.id, desired.error)
    return desired


def read_desired(
    *,
    session: Session,
    settings: Settings,
    box: SecretBox,
    at: dt.datetime,
    overrides: dict[str, Any] | None = None,
) -> dict[int, DesiredCamera]:
    """Every camera in service and what it should run as at `at`."""
    cameras = registry_service.cameras_in_service(session=session)
    states = passthrough.states_of(
        session=session,
        camera_ids=(c.id for c, _ in cameras if c.recording_path == "passthrough"),
    )
    return {
        camera.id: desired_camera(
            camera=camera,
            policy=policy_for(facts, at),
            settings=settings,
            box=box,
            overrides=overrides,
            state=states.get(camera.id),
        )
        for camera, facts in cameras
    }
