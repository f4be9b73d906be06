"""One-off preview frames: decoded in a short-lived child process (the API process never
decodes video), masked as far as the caller may see, with a plan's zones drawn on top.

Used by the stored-plan preview when no worker has a frame, and by the plan editor's preview of
an unsaved plan (a running worker only knows its own plan).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from masking import PlanError, parse_plan, plan_hash
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.errors import Conflict, ErrorItem, InvalidInput
from vms.pipeline.config import SourceSpec
from vms.pipeline.desired import build_source, effective_plan

if TYPE_CHECKING:
    from registry.models import Camera


class NoFrame(Conflict):
    """The camera gave no frame in time (409: its state, not the request, is at fault)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg=msg, code="no_frame")


@dataclass(frozen=True, slots=True)
class GrabRequest:
    """How to get a frame and what the caller may see of it (picklable, no settings): `plan`
    masks the frame first unless `raw`."""

    source: SourceSpec
    plan: dict[str, Any] | None
    raw: bool
    open_timeout_s: float
    read_timeout_s: float
    models_dir: str | None


def grab_request(
    *, camera: Camera, raw: bool, settings: Settings, box: SecretBox, masking_required: bool
) -> GrabRequest:
    plan, _ = effective_plan(camera, masking_required=masking_required)
    return GrabRequest(
        source=build_source(camera, box, settings),
        plan=plan,
        raw=raw,
        open_timeout_s=settings.pipeline.open_timeout_s,
        read_timeout_s=settings.pipeline.read_timeout_s,
        models_dir=str(settings.resolved_models_dir or "") or None,
    )


@dataclass(frozen=True, slots=True)
class PreviewJob:
    grab: GrabRequest
    apply: dict[str, Any] | None = None  # a further plan to anonymise the picture with
    overlay: dict[str, Any] | None = None  # the plan whose zones are drawn
    mask_overlay: bool = True  # let the overlay anonymise its static zones too


def stored_plan_job(grab: GrabRequest) -> PreviewJob:
    """The camera's own plan drawn over what the caller may see."""
    return PreviewJob(grab, overlay=grab.plan, mask_overlay=not grab.raw)


def validate_plan(plan: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """An unsaved plan normalised, and its hash; 422 naming `plan.<field>` when unusable."""
    try:
        parsed = parse_plan(plan)
    except PlanError as exc:
        raise InvalidInput(
            "the mask plan is not valid",
            items=[
                ErrorItem("invalid", e["msg"], f"plan.{e['field']}" if e["field"] else "plan")
                for e in exc.errors
            ],
        ) from exc
    return parsed.model_dump(mode="json", by_alias=True), plan_hash(parsed)


def _run_in_child(job: PreviewJob, conn: Connection) -> None:
    """Child process: decode one frame, mask it as the caller may see it, apply and draw."""
    try:
        import cv2

        from masking import Masker
        from masking.tool import render_preview
        from vms.pipeline.onvif import resolve_source_url
        from vms.pipeline.reader import check_stream_host
        from vms.pipeline.source import SourceConfig, open_config

        grab = job.grab
        spec: SourceSpec = grab.source
        if spec.kind == "onvif":
            url = resolve_source_url(spec, grab.open_timeout_s)
        else:
            url = spec.url or ""
            if spec.kind == "rtsp" and spec.networks:
                check_stream_host(url, spec.networks)
        config = SourceConfig(
            url, open_timeout=grab.open_timeout_s, read_timeout=grab.read_timeout_s
        )
        with open_config(config) as source:
            decoded = next(source.frames())
        bgr = decoded.frame.to_ndarray(format="bgr24")
        if not grab.raw:
            # What the live view would show (detections included) comes first.
            Masker(grab.plan, models_dir=grab.models_dir).apply_bgr(bgr)
        if job.apply is not None:
            Masker(job.apply, models_dir=grab.models_dir).apply_bgr(bgr)
        if job.overlay is not None:
            bgr = render_preview(bgr, job.overlay, masked=job.mask_overlay)
        ok, buf = cv2.imencode(".png", bgr)
        conn.send(("ok", buf.tobytes()) if ok else ("error", "PNG encoding failed"))
    except Exception as exc:
        from vms.pipeline.status import clean_error

        conn.send(("error", clean_error(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def run(job: PreviewJob, timeout: float) -> bytes:
    """PNG bytes of the preview (NoFrame when the camera gives none in time)."""
    ctx = multiprocessing.get_context("forkserver")
    recv_end, send_end = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_run_in_child, args=(job, send_end), daemon=True)
    process.start()
    send_end.close()
    try:
        if not recv_end.poll(timeout):
            raise NoFrame("no frame from the camera in time")
        try:
            kind, payload = recv_end.recv()
        except EOFError as exc:
            raise NoFrame("the preview process failed") from exc
    finally:
        recv_end.close()
        process.join(timeout=1)
        if process.is_alive():
            process.kill()
            process.join()
        process.close()
    if kind != "ok":
        raise NoFrame(f"no frame from the camera: {payload}")
    data: bytes = payload
    return data
