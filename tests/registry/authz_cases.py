"""Authorisation cases for sites, cameras, the register, compliance and the transparency map."""

from __future__ import annotations

from typing import Any

from tests.authz import ALL_ROLES, Ctx, Req, RouteCase, roles

WRITERS = roles("admin", "facility_manager")
READERS = roles("admin", "facility_manager", "dpo", "operator")  # police: 403
DPO_VIEWS = roles("admin", "facility_manager", "dpo")

CSV = (
    "name,purpose,purpose_category,mode,retention_hours,source_kind,source_url\n"
    "Entré,Skadegörelse,property_protection,live,0,rtsp,rtsp://127.0.0.1:8554/a\n"
)


def camera_body(ctx: Ctx) -> dict[str, Any]:
    basis = ctx.factory.basis(ctx.owner)
    return {
        "organisation_id": ctx.owner.id,
        "name": "Entré",
        "purpose": "Förebygga skadegörelse",
        "purpose_category": "property_protection",
        "mode": "live_and_recording",
        "retention_hours": 48,
        "legal_basis_id": basis.id,
        "source": {"kind": "rtsp", "url": "rtsp://127.0.0.1:8554/cam"},
    }


def _camera(ctx: Ctx, **extra: Any) -> Req:
    camera = ctx.factory.camera(ctx.owner)
    return Req(path_params={"camera_id": camera.id}, **extra)


def _passthrough(ctx: Ctx) -> Req:
    camera = ctx.factory.camera(
        ctx.owner,
        source={"kind": "onvif", "host": "127.0.0.1", "port": 8080},
        mask_plan={"version": 1, "default": "anonymise"},
        recording_path="passthrough",
    )
    return Req(path_params={"camera_id": camera.id})


def _shortened(ctx: Ctx) -> Req:
    from vms.core.db import utcnow

    camera = ctx.factory.camera(
        ctx.owner, retention_hours=24, retention_kept_before=utcnow(), retention_kept_hours=72
    )
    return Req(path_params={"camera_id": camera.id})


def _site(ctx: Ctx, **extra: Any) -> Req:
    site = ctx.factory.site(ctx.owner)
    return Req(path_params={"site_id": site.id}, **extra)


def _in_owner(ctx: Ctx) -> Req:
    ctx.factory.camera(ctx.owner)
    return Req(params={"organisation_id": ctx.owner.id})


CASES = [
    RouteCase(
        "POST",
        "/api/v1/sites",
        201,
        WRITERS,
        lambda ctx: Req(json={"organisation_id": ctx.owner.id, "name": "Hus A"}),
    ),
    RouteCase("GET", "/api/v1/sites", 200, READERS, _in_owner),
    RouteCase("GET", "/api/v1/sites/{site_id}", 200, READERS, _site),
    RouteCase(
        "PATCH",
        "/api/v1/sites/{site_id}",
        200,
        WRITERS,
        lambda ctx: _site(ctx, json={"address": "Nygatan 2"}),
    ),
    RouteCase("POST", "/api/v1/cameras", 201, WRITERS, lambda ctx: Req(json=camera_body(ctx))),
    RouteCase("GET", "/api/v1/cameras", 200, READERS, _in_owner),
    # Transparency data: every role; police see every organisation like admin does.
    RouteCase(
        "GET",
        "/api/v1/cameras.geojson",
        200,
        ALL_ROLES,
        _in_owner,
        cross_org_roles=roles("admin", "police"),
    ),
    RouteCase(
        "POST",
        "/api/v1/cameras/import",
        200,
        WRITERS,
        lambda ctx: Req(
            params={"organisation_id": ctx.owner.id},
            files={"file": ("register.csv", CSV.encode(), "text/csv")},
        ),
    ),
    RouteCase("GET", "/api/v1/cameras/{camera_id}", 200, READERS, _camera),
    RouteCase(
        "PATCH",
        "/api/v1/cameras/{camera_id}",
        200,
        WRITERS,
        lambda ctx: _camera(ctx, json={"name": "Renamed"}),
    ),
    RouteCase("DELETE", "/api/v1/cameras/{camera_id}", 200, WRITERS, _camera),
    RouteCase("GET", "/api/v1/cameras/{camera_id}/policy", 200, READERS, _camera),
    RouteCase(
        "POST",
        "/api/v1/cameras/{camera_id}/retention/confirm-shortening",
        200,
        roles("admin", "dpo"),
        _shortened,
    ),
    RouteCase("POST", "/api/v1/cameras/{camera_id}/passthrough/retry", 200, WRITERS, _passthrough),
    RouteCase("GET", "/api/v1/register", 200, DPO_VIEWS, _in_owner),
    RouteCase("GET", "/api/v1/compliance", 200, DPO_VIEWS, _in_owner),
]
