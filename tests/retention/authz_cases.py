"""Authorisation cases for the retention routes (legal holds, receipts, the DPO report)."""

from __future__ import annotations

import datetime as dt

from tests.authz import Ctx, Req, RouteCase, roles
from vms.core.db import utcnow
from vms.core.models import Role

HOLDERS = roles("admin", "dpo", "police")
DPO_ADMIN = roles("admin", "dpo")
POLICE_NEVER_SEES_OTHERS = {(Role.police, True): 404, (Role.police, False): 404}


def _new_hold(ctx: Ctx) -> Req:
    camera = ctx.factory.camera(ctx.owner)
    now = utcnow()
    return Req(
        json={
            "camera_ids": [camera.id],
            "start": (now - dt.timedelta(hours=5)).isoformat(),
            "end": now.isoformat(),
            "case_number": "K123-25",
            "reason": "Inbrott i källarförråd",
            "expires_at": (now + dt.timedelta(days=90)).isoformat(),
        }
    )


def _existing_hold(ctx: Ctx) -> Req:
    # Created by the owner organisation's DPO: a police caller did not create it, so police
    # never see it (own or other organisation); DPOs see it in their own organisation only.
    camera = ctx.factory.camera(ctx.owner)
    dpo = ctx.factory.user(Role.dpo, ctx.owner, password=None)
    hold = ctx.factory.hold([camera], by=dpo)
    return Req(path_params={"hold_id": hold.id}, json={"reason": "Förundersökningen nedlagd"})


def _camera_param(ctx: Ctx) -> Req:
    camera = ctx.factory.camera(ctx.owner)
    return Req(params={"camera_id": camera.id})


CASES = [
    # Police may name any camera (they work across organisations); a DPO only reaches cameras of
    # organisations they read.
    RouteCase(
        "POST",
        "/api/v1/holds",
        201,
        HOLDERS,
        _new_hold,
        cross_org_roles=roles("admin", "police"),
    ),
    RouteCase("GET", "/api/v1/holds", 200, HOLDERS, other_org=None),
    RouteCase(
        "GET",
        "/api/v1/holds/{hold_id}",
        200,
        HOLDERS,
        _existing_hold,
        overrides=POLICE_NEVER_SEES_OTHERS,
    ),
    RouteCase(
        "POST",
        "/api/v1/holds/{hold_id}/release",
        200,
        HOLDERS,
        _existing_hold,
        overrides=POLICE_NEVER_SEES_OTHERS,
    ),
    RouteCase("GET", "/api/v1/retention/receipts", 200, DPO_ADMIN, _camera_param),
    RouteCase("GET", "/api/v1/reports/retention", 200, DPO_ADMIN, _camera_param),
]
