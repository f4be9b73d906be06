"""Authorisation cases for sharing agreements, shared cameras and recipients' stream sessions.

`ctx.owner` is the organisation that shares its cameras for the agreement routes, and the
recipient for "cameras shared with us" and the stream sessions (the cameras then belong to a
third organisation). The matrix app runs no relay, so an allowed request for a stream session
answers 409 ("relay not running") once authorisation has passed.
"""

from __future__ import annotations

from typing import Any

from tests.authz import ALL_ROLES, Ctx, Req, RouteCase, roles
from tests.sharing.helpers import PDF, agreement, create_body, stream_session
from vms.core.models import Role

OWNER_READ = roles("admin", "facility_manager", "dpo")
# Police and operators of an organisation unrelated to the agreement: it does not exist for them.
HIDDEN = {(Role.police, False): 404, (Role.operator, False): 404}


def _agreement(ctx: Ctx, status: str = "in_force", **extra: Any) -> Req:
    camera = ctx.factory.camera(ctx.owner)
    row = agreement(
        ctx.session,
        ctx.owner,
        ctx.factory.org(),
        [camera],
        status=status,
        documents_dir=ctx.settings.data_dir / "documents",
    )
    return Req(path_params={"agreement_id": row.id}, **extra)


def _document(ctx: Ctx) -> Req:
    req = _agreement(ctx)
    from sqlalchemy import select

    from sharing.models import SharingAgreementDocument

    doc_id = ctx.session.scalar(
        select(SharingAgreementDocument.id).where(
            SharingAgreementDocument.agreement_id == req.path_params["agreement_id"]
        )
    )
    req.path_params["document_id"] = doc_id
    return req


def _shared_with_owner(ctx: Ctx) -> tuple[Any, Any]:
    third = ctx.factory.org()
    camera = ctx.factory.camera(third, mode="live")
    return camera, agreement(ctx.session, third, ctx.owner, [camera])


def _stream(ctx: Ctx) -> Req:
    camera, _ = _shared_with_owner(ctx)
    return Req(path_params={"camera_id": camera.id})


def _session(ctx: Ctx) -> Req:
    camera, row = _shared_with_owner(ctx)
    caller = ctx.caller
    own = caller is not None and caller.organisation_id == ctx.owner.id
    user = (
        caller.user if own and caller is not None else ctx.factory.user(Role.police, ctx.owner).user
    )
    return Req(path_params={"session_id": stream_session(ctx.session, row, camera, user).id})


CASES = [
    RouteCase(
        "POST",
        "/api/v1/sharing-agreements",
        201,
        roles("admin", "facility_manager"),
        lambda ctx: Req(
            json=create_body(
                ctx.factory.org().id,
                [ctx.factory.camera(ctx.owner).id],
                owner_organisation_id=ctx.owner.id,
            )
        ),
    ),
    RouteCase("GET", "/api/v1/sharing-agreements", 200, ALL_ROLES, other_org=None),
    RouteCase(
        "GET",
        "/api/v1/sharing-agreements/{agreement_id}",
        200,
        OWNER_READ,
        _agreement,
        overrides=HIDDEN,
    ),
    RouteCase(
        "PATCH",
        "/api/v1/sharing-agreements/{agreement_id}",
        200,
        roles("admin", "facility_manager"),
        lambda ctx: _agreement(ctx, "draft", json={"title": "Nytt namn"}),
    ),
    RouteCase(
        "POST",
        "/api/v1/sharing-agreements/{agreement_id}/status",
        200,
        roles("admin", "dpo"),
        lambda ctx: _agreement(ctx, "draft", json={"status": "in_force"}),
    ),
    RouteCase(
        "POST",
        "/api/v1/sharing-agreements/{agreement_id}/documents",
        201,
        OWNER_READ,
        lambda ctx: _agreement(ctx, "draft", files={"file": ("avtal.pdf", PDF, "application/pdf")}),
    ),
    RouteCase(
        "GET",
        "/api/v1/sharing-agreements/{agreement_id}/documents/{document_id}",
        200,
        OWNER_READ,
        _document,
        overrides=HIDDEN,
    ),
    RouteCase(
        "GET",
        "/api/v1/sharing-agreements/{agreement_id}/report",
        200,
        roles("admin", "dpo"),
        _agreement,
    ),
    RouteCase("GET", "/api/v1/shared-cameras", 200, ALL_ROLES, other_org=None),
    RouteCase(
        "POST",
        "/api/v1/shared-cameras/{camera_id}/stream-sessions",
        409,
        roles("police", "operator"),
        _stream,
    ),
    RouteCase(
        "DELETE",
        "/api/v1/stream-sessions/{session_id}",
        200,
        roles("police", "operator", "admin"),
        _session,
    ),
]


def _recorded(ctx: Ctx) -> tuple[Any, Any]:
    third = ctx.factory.org()
    camera = ctx.factory.camera(third, mode="live_and_recording")
    agreement(ctx.session, third, ctx.owner, [camera], scope="live_and_recordings")
    segment = ctx.factory.segment(camera, minutes=1, data_dir=ctx.settings.data_dir)
    return camera, segment


def _recordings(ctx: Ctx) -> Req:
    camera, _ = _recorded(ctx)
    return Req(path_params={"camera_id": camera.id})


def _recording(ctx: Ctx) -> Req:
    camera, segment = _recorded(ctx)
    return Req(path_params={"camera_id": camera.id, "segment_id": segment.id})


CASES += [
    RouteCase(
        "GET",
        "/api/v1/shared-cameras/{camera_id}/recordings",
        200,
        roles("police", "operator"),
        _recordings,
    ),
    RouteCase(
        "GET",
        "/api/v1/shared-cameras/{camera_id}/recordings/{segment_id}/video",
        200,
        roles("police", "operator"),
        _recording,
    ),
]
