"""Authorisation cases for the core routes (auth, organisations, users, audit)."""

from __future__ import annotations

from tests.authz import ALL_ROLES, Ctx, Req, RouteCase, roles
from vms.core.models import Role


def _user_in_owner(ctx: Ctx) -> Req:
    target = ctx.factory.user(Role.operator, ctx.owner)
    return Req(path_params={"user_id": target.user.id})


def _dpo_in_owner(ctx: Ctx) -> Req:
    target = ctx.factory.user(Role.dpo, ctx.owner)
    return Req(path_params={"user_id": target.user.id}, json={"organisation_id": ctx.owner.id})


def _login(ctx: Ctx) -> Req:
    ctx.factory.user(Role.operator, ctx.owner, email="login@example.se", password="s3cret-pass")
    return Req(json={"email": "login@example.se", "password": "s3cret-pass"})


CASES = [
    RouteCase("GET", "/health", 200, ALL_ROLES, anon=200, other_org=None),
    RouteCase("POST", "/api/v1/auth/token", 200, ALL_ROLES, _login, anon=200, other_org=None),
    RouteCase("POST", "/api/v1/auth/revoke", 204, ALL_ROLES, other_org=None),
    RouteCase("GET", "/api/v1/auth/me", 200, ALL_ROLES, other_org=None),
    RouteCase("GET", "/api/v1/organisations", 200, ALL_ROLES, other_org=None),
    RouteCase(
        "POST",
        "/api/v1/organisations",
        201,
        roles("admin"),
        lambda ctx: Req(json={"name": "New Org AB"}),
        other_org=None,
    ),
    RouteCase(
        "GET",
        "/api/v1/organisations/{organisation_id}",
        200,
        ALL_ROLES,
        lambda ctx: Req(path_params={"organisation_id": ctx.owner.id}),
    ),
    RouteCase(
        "PATCH",
        "/api/v1/organisations/{organisation_id}",
        200,
        roles("admin"),
        lambda ctx: Req(path_params={"organisation_id": ctx.owner.id}, json={"org_number": "1"}),
    ),
    RouteCase("GET", "/api/v1/users", 200, roles("admin", "dpo"), other_org=None),
    RouteCase(
        "POST",
        "/api/v1/users",
        201,
        roles("admin"),
        lambda ctx: Req(
            json={"email": "new@example.se", "organisation_id": ctx.owner.id, "role": "operator"}
        ),
    ),
    RouteCase(
        "GET",
        "/api/v1/users/{user_id}",
        200,
        roles("admin", "dpo"),
        _user_in_owner,
        # Other users can only look themselves up; anyone else is hidden, not forbidden.
        overrides={
            (r, own): 404
            for r in roles("facility_manager", "operator", "police")
            for own in (True, False)
        },
    ),
    RouteCase(
        "PATCH",
        "/api/v1/users/{user_id}",
        200,
        roles("admin"),
        lambda ctx: Req(**{**_user_in_owner(ctx).__dict__, "json": {"name": "Renamed"}}),
    ),
    RouteCase("DELETE", "/api/v1/users/{user_id}", 200, roles("admin"), _user_in_owner),
    RouteCase(
        "POST", "/api/v1/users/{user_id}/dpo-assignments", 200, roles("admin"), _dpo_in_owner
    ),
    RouteCase("GET", "/api/v1/audit", 200, roles("admin", "dpo"), other_org=None),
    RouteCase("GET", "/api/v1/audit/verify", 200, roles("admin", "dpo"), other_org=None),
    RouteCase("GET", "/api/v1/audit/head", 200, roles("admin", "dpo"), other_org=None),
]
