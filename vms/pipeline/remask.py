"""Re-masking quarantined segments: passthrough footage that no passing mask check covers is
decoded, masked by vms with the plan it was recorded under, and encoded again; the masked file
replaces the camera's (whose unmasked pixels are then gone) and the segment becomes playable.

Per segment: encode into `<file>.remask.partial`, fsync, hash, `os.replace` over the segment,
fsync the folder, then update the index row (state ok, masked by vms, new hash and size) and
audit it in one transaction. A crash between the rename and the commit leaves a masked file
under a quarantined row: the next run masks it again (masking masked pixels changes nothing a
viewer could see) and commits.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from sqlalchemy.orm import Session

from masking import Masker
from registry import service as registry_service
from retention import service as retention_service
from vms.core import audit
from vms.core.files import file_sha256, fsync_dir, fsync_file
from vms.pipeline.config import ANONYMISE_ALL

logger = logging.getLogger(__name__)

REMASK_SUFFIX = ".remask.partial"


@dataclass(frozen=True, slots=True)
class Remasked:
    segment_id: int
    camera_id: int
    path: str
    frames: int
    old_sha256: str
    sha256: str
    mask_plan_hash: str | None


class RemaskError(Exception):
    """A segment could not be re-masked (unreadable file, encoder failure); it stays
    quarantined and untouched."""


def encode_masked(
    source: Path,
    target: Path,
    plan: dict[str, Any],
    *,
    models_dir: str | None = None,
    preset: str = "veryfast",
    crf: int = 23,
) -> int:
    """Decode `source`, mask every frame with `plan`, encode H.264 into `target` (timestamps
    kept); returns the frames written. `target` is removed if anything fails."""
    masker = Masker(plan, models_dir=models_dir)
    frames = 0
    try:
        with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
            stream_in = inp.streams.video[0]
            rate = stream_in.average_rate or Fraction(25)
            stream = out.add_stream("libx264", rate=rate)
            stream.width = stream_in.codec_context.width
            stream.height = stream_in.codec_context.height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = stream_in.time_base or Fraction(1, 90000)
            stream.options = {"preset": preset, "crf": str(crf)}
            out.metadata.update(inp.metadata)
            for frame in inp.decode(stream_in):
                if frame.format.name != "yuv420p":
                    frame = frame.reformat(format="yuv420p")
                masked = masker.apply_yuv420(frame)
                masked.pts, masked.time_base = frame.pts, frame.time_base
                masked.pict_type = av.video.frame.PictureType.NONE
                for packet in stream.encode(masked):
                    out.mux(packet)
                frames += 1
            for packet in stream.encode(None):
                out.mux(packet)
    except (av.FFmpegError, OSError, ValueError) as exc:
        target.unlink(missing_ok=True)
        raise RemaskError(f"cannot re-mask {source.name}: {type(exc).__name__}: {exc}") from None
    if frames == 0:
        target.unlink(missing_ok=True)
        raise RemaskError(f"{source.name} has no decodable frames")
    return frames


def remask(
    *,
    session: Session,
    data_dir: Path,
    camera_id: int | None = None,
    segment_ids: Sequence[int] = (),
    models_dir: str | None = None,
    dry_run: bool = False,
) -> tuple[list[Remasked], list[tuple[int, str]]]:
    """Re-mask the quarantined segments chosen (a camera's, these ids, or all); each is
    committed on its own. Returns what was done and what failed (id, why)."""
    rows = retention_service.quarantined_segments(
        session=session, camera_id=camera_id, segment_ids=segment_ids
    )
    done: list[Remasked] = []
    failed: list[tuple[int, str]] = []
    for seg in rows:
        if dry_run:
            done.append(
                Remasked(
                    seg.id,
                    seg.camera_id,
                    seg.path,
                    seg.frames,
                    seg.sha256,
                    seg.sha256,
                    seg.mask_plan_hash,
                )
            )
            continue
        try:
            done.append(_one(session, data_dir, seg, models_dir))
        except RemaskError as exc:
            session.rollback()
            failed.append((seg.id, str(exc)))
            logger.error("segment %s: %s", seg.id, exc)
    return done, failed


def _plan_of(session: Session, seg: Any) -> tuple[dict[str, Any], str | None]:
    """The plan the segment was recorded under (the camera was to draw it); anonymise all when
    the registry no longer has it."""
    camera = registry_service.get_camera_or_raise(session=session, camera_id=seg.camera_id)
    if seg.mask_plan_hash is not None:
        plan = registry_service.mask_plans(
            session=session, camera=camera, hashes=[seg.mask_plan_hash]
        ).get(seg.mask_plan_hash)
        if plan is not None:
            return plan, seg.mask_plan_hash
    from masking import plan_hash

    return ANONYMISE_ALL, plan_hash(ANONYMISE_ALL)


def _one(session: Session, data_dir: Path, seg: Any, models_dir: str | None) -> Remasked:
    path = retention_service.resolve_segment_file(data_dir, seg)
    if not path.is_file():
        raise RemaskError(f"{seg.path} is missing")
    plan, digest = _plan_of(session, seg)
    tmp = path.with_name(path.name + REMASK_SUFFIX)
    frames = encode_masked(path, tmp, plan, models_dir=models_dir)
    try:
        fsync_file(tmp)
        size = tmp.stat().st_size
        sha = file_sha256(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RemaskError(f"cannot replace {seg.path}: {exc}") from None
    old_sha = seg.sha256
    retention_service.release_remasked(
        session=session,
        segment_id=seg.id,
        sha256=sha,
        size_bytes=size,
        frames=frames,
        mask_plan_hash=digest,
    )
    camera = registry_service.get_camera_or_raise(session=session, camera_id=seg.camera_id)
    audit.record(
        session,
        action="recording.remasked",
        organisation_id=camera.organisation_id,
        target_type="segment",
        target_id=seg.id,
        details={
            "camera_id": seg.camera_id,
            "path": seg.path,
            "start": seg.start.astimezone(dt.UTC).isoformat(),
            "end": seg.end.astimezone(dt.UTC).isoformat(),
            "old_sha256": old_sha,
            "sha256": sha,
            "mask_plan_hash": digest,
        },
    )
    session.commit()
    logger.info("segment %s re-masked (%s frames)", seg.id, frames)
    return Remasked(seg.id, seg.camera_id, seg.path, frames, old_sha, sha, digest)
