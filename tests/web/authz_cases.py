"""Authorisation cases for the web interface's routes (pages, sign-in, sign-out, language).

Pages authenticate with the session cookie, as a browser does. A signed-in user whose role a page
is not for gets a 403 page; anonymous users are sent to sign in (303); a page about one thing
(camera, export) in another organisation is a 404 page, like the API's answer for it.
"""

from __future__ import annotations

import secrets

from tests.authz import ALL_ROLES, Ctx, Req, RouteCase
from tests.export.authz_cases import _request as export_request
from vms.core.browser import csrf_token
from vms.core.models import Role
from vms.web.pages import PAGES, PageSpec

SIGN_IN = 303  # anonymous: redirected to /login


def _camera(ctx: Ctx) -> Req:
    camera = ctx.factory.camera(ctx.owner)
    return Req(path_params={"camera_id": camera.id})


def _login(ctx: Ctx) -> Req:
    ctx.factory.user(Role.operator, ctx.owner, email="web-login@example.se", password="s3cret-pw")
    nonce = secrets.token_urlsafe(16)
    return Req(
        data={
            "email": "web-login@example.se",
            "password": "s3cret-pw",
            "login_csrf": nonce,
            "next": "/",
        },
        cookies={"vms_login_csrf": nonce},
    )


def _logout(ctx: Ctx) -> Req:
    if ctx.caller is None:
        return Req(data={"csrf": ""})
    return Req(data={"csrf": csrf_token(ctx.settings.secret_key_bytes(), ctx.caller.token)})


# Pages about one thing: how the matrix makes that thing in the owner organisation.
_LOOKUPS = {
    "/cameras/{camera_id}": _camera,
    "/cameras/{camera_id}/mask": _camera,
    "/live/{camera_id}": _camera,
    "/exports/{export_id}": export_request,
}


def _page_case(page: PageSpec) -> RouteCase:
    make = _LOOKUPS.get(page.path)
    if make is None:
        return RouteCase(
            "GET", page.path, 200, page.roles, anon=SIGN_IN, other_org=None, auth="cookie"
        )
    overrides = {}
    if page.name == "export_detail":
        # As for GET /api/v1/exports/{id}: another organisation's DPO does not see it.
        overrides = {(Role.dpo, False): 404}
    return RouteCase(
        "GET",
        page.path,
        200,
        page.roles,
        make,
        anon=SIGN_IN,
        auth="cookie",
        overrides=overrides,
    )


CASES = [
    RouteCase("GET", "/", 303, ALL_ROLES, anon=SIGN_IN, other_org=None, auth="cookie"),
    # Signed in already: straight on to the page asked for.
    RouteCase("GET", "/login", 303, ALL_ROLES, anon=200, other_org=None, auth="cookie"),
    RouteCase("POST", "/login", 303, ALL_ROLES, _login, anon=303, other_org=None, auth="cookie"),
    RouteCase("POST", "/logout", 303, ALL_ROLES, _logout, anon=303, other_org=None, auth="cookie"),
    RouteCase(
        "GET",
        "/lang",
        303,
        ALL_ROLES,
        lambda ctx: Req(params={"set": "en", "next": "/cameras"}),
        anon=303,
        other_org=None,
        auth="cookie",
    ),
    *(_page_case(page) for page in PAGES),
]
