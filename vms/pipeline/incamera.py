"""The worker's side of in-camera masks: putting a plan on the camera (ONVIF Media2), writing
the camera's passthrough record, and decoding the keyframes that are checked."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from masking.incamera import CameraMasks, InCameraError, MaskColor, camera_masks
from registry import passthrough as passthrough_record
from registry.schemas import PassthroughStatus
from vms.core import netpolicy
from vms.core.db import session_scope
from vms.pipeline import media2
from vms.pipeline.config import WorkerConfig

# How long a camera's ONVIF service may take for the masks.
PUSH_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class PushedMasks:
    """Masks in force on the camera for one frame size, and how to check them."""

    masks: CameraMasks
    color: MaskColor
    tokens: tuple[str, ...]


PushMasks = Callable[[WorkerConfig, Any, int, int], PushedMasks]


class CannotPassthrough(Exception):
    """The camera cannot carry the plan: `reason` is short and stable, the message for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def push_plan_masks(config: WorkerConfig, plan: Any, width: int, height: int) -> PushedMasks:
    """Put the plan on the camera as Media2 masks for a `width` x `height` picture (ONVIF
    coordinates are normalised: the same masks hold for every stream of the source). Raises
    CannotPassthrough when the device cannot draw it, OnvifError when it cannot be reached."""
    spec = config.source
    host, port = spec.onvif_host or "", spec.onvif_port or 80
    user, password = spec.username or "", spec.password or ""
    networks = netpolicy.parse_networks(spec.networks) if spec.networks else None

    async def push() -> PushedMasks:
        options = await media2.mask_options(
            host, port, user, password, timeout=PUSH_TIMEOUT_S, networks=networks
        )
        masks = camera_masks(plan, width, height, options.limits)
        applied = await media2.apply_masks(
            host, port, user, password, masks.polygons, timeout=PUSH_TIMEOUT_S, networks=networks
        )
        return PushedMasks(masks, applied.color, applied.tokens)

    try:
        return asyncio.run(push())
    except (media2.MasksUnsupported, media2.MaskLimitError) as exc:
        raise CannotPassthrough("device_unsupported", str(exc)) from None
    except InCameraError as exc:
        raise CannotPassthrough("plan_unsupported", str(exc)) from None


class DbPassthroughRecord:
    """The camera's passthrough record (`registry.passthrough`), written in the worker's own
    database sessions."""

    def __init__(self, index: Any, camera_id: int, plan_hash: str | None) -> None:
        self._sessions = index.sessions
        self._organisation_id = index.organisation_id
        self._camera_id = camera_id
        self._plan_hash = plan_hash

    def started(self, pushed: PushedMasks) -> None:
        with session_scope(self._sessions) as session:
            passthrough_record.started(
                session=session,
                camera_id=self._camera_id,
                plan_hash=self._plan_hash,
                mask_tokens=pushed.tokens,
                mask_color=(pushed.color.y, pushed.color.cb, pushed.color.cr),
            )

    def verified(self, at: dt.datetime, checks: int) -> None:
        with session_scope(self._sessions) as session:
            passthrough_record.verified(
                session=session,
                camera_id=self._camera_id,
                plan_hash=self._plan_hash,
                at=at,
                checks=checks,
            )

    def failed(
        self, status: str, reason: str, detail: str, at: dt.datetime, quarantined: int
    ) -> None:
        with session_scope(self._sessions) as session:
            passthrough_record.failed(
                session=session,
                organisation_id=self._organisation_id,
                camera_id=self._camera_id,
                plan_hash=self._plan_hash,
                at=at,
                status=PassthroughStatus(status),
                reason=reason,
                detail=detail,
                quarantined=quarantined,
            )


class KeyframeDecoder:
    """Decodes keyframes on their own, or every packet from a keyframe on (`continuous`, while
    someone watches live)."""

    def __init__(self, stream: Any) -> None:
        source = stream.codec_context
        self.ctx: Any = av.CodecContext.create(source.name, "r")
        if source.extradata:
            self.ctx.extradata = source.extradata
        self.ctx.thread_count = 1
        self.continuous = False

    def decode(self, packet: av.Packet[Any]) -> av.VideoFrame | None:
        try:
            frames = self.ctx.decode(packet)
        except (av.FFmpegError, ValueError):
            self.continuous = False  # resume at the next keyframe
            return None
        if not frames and packet.is_keyframe and not self.continuous:
            # A decoder that holds pictures back for reordering: drain it (a keyframe decodes
            # on its own) and make it ready for the next one.
            try:
                frames = self.ctx.decode(None)
            except (av.FFmpegError, ValueError):
                frames = []
            self.ctx.flush_buffers()
        frame = frames[-1] if frames else None
        if frame is not None and frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        return frame
