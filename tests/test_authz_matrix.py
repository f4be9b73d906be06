"""Every route x every role x own/other organisation, with the exact status code."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from starlette.routing import BaseRoute

import tests
from tests.authz import Ctx, RouteCase
from tests.factories import Factory
from vms.api import create_app
from vms.core.browser import SESSION_COOKIE
from vms.core.config import Settings
from vms.core.models import Role

# Routes FastAPI adds for its own documentation.
_DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _all_cases() -> list[RouteCase]:
    cases: list[RouteCase] = []
    root = Path(tests.__file__).parent
    for info in pkgutil.iter_modules([str(root)]):
        if info.ispkg and (root / info.name / "authz_cases.py").exists():
            mod = importlib.import_module(f"tests.{info.name}.authz_cases")
            cases.extend(mod.CASES)
    return cases


CASES = _all_cases()
_BY_KEY = {(c.method, c.path): c for c in CASES}


def _app_routes(settings: Settings) -> set[tuple[str, str]]:
    # The OpenAPI document lists every operation of every included router; vms keeps every
    # API route in the schema so that this enumeration (and schemathesis) sees all of them.
    app = create_app(settings)
    api = {
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if path not in _DOC_ROUTES
    }
    # The web interface's pages are left out of the schema (they answer HTML): take them from
    # the app's routes, so a new page without a case fails here too.
    pages = {
        (method, route.path)
        for route in _walk(app.routes)
        if not route.include_in_schema
        for method in route.methods or ()
        if method != "HEAD"
    }
    return api | pages


def _walk(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute of the app. Newer FastAPI keeps an included router as one entry that
    wraps it (`original_router`); vms includes routers without a prefix, so the wrapped
    routes' paths are the app's."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk(inner.routes)


def test_every_route_has_a_case(settings: Settings) -> None:
    routes = _app_routes(settings)
    missing = sorted(routes - _BY_KEY.keys())
    stale = sorted(_BY_KEY.keys() - routes)
    assert not missing, f"routes without an authorisation case: {missing}"
    assert not stale, f"cases for routes that do not exist: {stale}"
    assert len(CASES) == len(_BY_KEY), "a route is listed twice"


@pytest.mark.parametrize("own", [True, False], ids=["own-org", "other-org"])
@pytest.mark.parametrize("role", [None, *Role], ids=lambda r: "anon" if r is None else r.value)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_route_authorisation(
    case: RouteCase,
    role: Role | None,
    own: bool,
    client: TestClient,
    session: Session,
    factory: Factory,
    settings: Settings,
) -> None:
    home = factory.org()
    owner = home if own else factory.org()
    caller = factory.user(role, home, password=None) if role is not None else None
    ctx = Ctx(session=session, factory=factory, settings=settings, owner=owner, caller=caller)
    req = case.make(ctx)
    path = case.path.format(**req.path_params)
    session.flush()
    headers = caller.headers if caller and case.auth == "bearer" else {}
    client.cookies.clear()
    if caller and case.auth == "cookie":
        client.cookies.set(SESSION_COOKIE, caller.token)
    for name, value in (req.cookies or {}).items():
        client.cookies.set(name, value)
    resp = client.request(
        case.method,
        path,
        headers=headers,
        json=req.json,
        params=req.params,
        files=req.files,
        data=req.data,
        follow_redirects=False,
    )
    want = case.expected(role, own)
    assert resp.status_code == want, (
        f"{case.method} {path} as {role.value if role else 'anonymous'} "
        f"({'own' if own else 'other'} organisation): expected {want}, "
        f"got {resp.status_code}: {resp.text[:300]}"
    )
