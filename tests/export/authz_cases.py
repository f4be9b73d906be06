"""Authorisation cases for the export routes and the police camera search.

Police request footage of any organisation's cameras and see their own organisation's requests;
a DPO sees and decides requests for their organisations' cameras; only the requesting officer
downloads; the public key is public.
"""

from __future__ import annotations

import datetime as dt

from tests.authz import ALL_ROLES, Ctx, Req, RouteCase, roles
from tests.factories import Actor
from vms.core.db import utcnow
from vms.core.models import Role

POLICE_ADMIN = roles("police", "admin")
READERS = roles("police", "dpo", "admin")
DECIDERS = roles("dpo", "admin")
# A DPO of another organisation does not see the request at all.
DPO_OTHER_HIDDEN = {(Role.dpo, False): 404}


def _request(ctx: Ctx, status: str = "requested", *, by_caller: bool = False) -> Req:
    """A request for a camera of the owner organisation, filed by a police officer of the owner
    organisation (or by the caller, when the caller is police of that organisation)."""
    camera = ctx.factory.camera(ctx.owner)
    requester: Actor | None = None
    caller = ctx.caller
    if (
        by_caller
        and caller is not None
        and caller.user.role is Role.police
        and caller.organisation_id == ctx.owner.id
    ):
        requester = caller
    requester = requester or ctx.factory.user(Role.police, ctx.owner, password=None)
    req = ctx.factory.export_request(
        camera, requester, status=status, data_dir=ctx.settings.data_dir
    )
    return Req(path_params={"export_id": req.id})


def _new_request(ctx: Ctx) -> Req:
    camera = ctx.factory.camera(ctx.owner)
    start = utcnow() - dt.timedelta(hours=2)
    ctx.factory.segment(camera, start=start, end=start + dt.timedelta(minutes=10))
    return Req(
        json={
            "case_number": "5000-K123456-25",
            "legal_ground": {"category": "preliminary_investigation", "text": "RB 27 kap. 1 §"},
            "officer": "Anna Andersson",
            "unit": "LPO City",
            "camera_ids": [camera.id],
            "start": start.isoformat(),
            "end": (start + dt.timedelta(minutes=5)).isoformat(),
            "reason": "Inbrott i cykelrummet",
        }
    )


def _near(ctx: Ctx) -> Req:
    ctx.factory.camera(ctx.owner, lat=57.7089, lon=11.9746)
    return Req(params={"lat": 57.7089, "lon": 11.9746, "radius_m": 100})


CASES = [
    RouteCase(
        "GET",
        "/api/v1/cameras/near",
        200,
        POLICE_ADMIN,
        _near,
        other_org=None,
        cross_org_roles=POLICE_ADMIN,
    ),
    RouteCase("GET", "/api/v1/exports/public-key", 200, ALL_ROLES, anon=200, other_org=None),
    RouteCase(
        "POST",
        "/api/v1/exports",
        201,
        roles("police"),
        _new_request,
        other_org=None,  # police request footage of any organisation
    ),
    RouteCase("GET", "/api/v1/exports", 200, READERS, other_org=None),
    RouteCase("GET", "/api/v1/exports/{export_id}", 200, READERS, _request),
    RouteCase("POST", "/api/v1/exports/{export_id}/approve", 200, DECIDERS, _request),
    RouteCase(
        "POST",
        "/api/v1/exports/{export_id}/reject",
        200,
        DECIDERS,
        lambda ctx: Req(**{**_request(ctx).__dict__, "json": {"reason": "Ingen grund angiven"}}),
    ),
    RouteCase(
        "POST",
        "/api/v1/exports/{export_id}/close",
        200,
        POLICE_ADMIN,
        lambda ctx: _request(ctx, by_caller=True),
        # The owner's DPO sees the request but may not close it; other DPOs do not see it.
        overrides=DPO_OTHER_HIDDEN,
    ),
    RouteCase(
        "GET",
        "/api/v1/exports/{export_id}/download",
        200,
        roles("police"),
        lambda ctx: _request(ctx, "ready", by_caller=True),
        # Only the requesting officer downloads: admins and the owner's DPO see the request
        # (403), other DPOs do not (404).
        overrides=DPO_OTHER_HIDDEN,
    ),
]
