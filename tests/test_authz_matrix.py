"""Every route x every role x own/other organisation, with the exact status code."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import tests
from tests.authz import Ctx, RouteCase
from tests.factories import Factory
from vms.api import create_app
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
    # route in the schema so that this enumeration (and schemathesis) sees all of them.
    app = create_app(settings)
    return {
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if path not in _DOC_ROUTES
    }


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
    resp = client.request(
        case.method,
        path,
        headers=caller.headers if caller else {},
        json=req.json,
        params=req.params,
        files=req.files,
        data=req.data,
    )
    want = case.expected(role, own)
    assert resp.status_code == want, (
        f"{case.method} {path} as {role.value if role else 'anonymous'} "
        f"({'own' if own else 'other'} organisation): expected {want}, "
        f"got {resp.status_code}: {resp.text[:300]}"
    )
