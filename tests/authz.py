"""The authorisation matrix: every route x every role x own/other organisation.

Each domain lists its routes in `tests/<domain>/authz_cases.py` as `CASES: list[RouteCase]`.
`tests/test_authz_matrix.py` enumerates the app's routes and fails if any route has no case, then
calls each route as anonymous, as every role in the owning organisation, and as every role in
another organisation, asserting the exact status code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from tests.factories import Actor, Factory
from vms.core.config import Settings
from vms.core.models import Organisation, Role


@dataclass
class Ctx:
    """What a case's `make` gets: the owning organisation and a way to build data in it."""

    session: Session
    factory: Factory
    settings: Settings
    owner: Organisation  # the organisation whose resource the request targets
    caller: Actor | None  # None for anonymous
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Req:
    path_params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    params: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    cookies: dict[str, str] | None = None


@dataclass
class RouteCase:
    method: str
    path: str  # the route template, exactly as FastAPI knows it
    ok: int  # status when allowed
    roles: frozenset[Role]  # roles allowed on their own organisation's data
    make: Callable[[Ctx], Req] = lambda ctx: Req()
    # Status for an allowed role acting on another organisation's resource: 404 hides it.
    other_org: int | None = 404
    # Roles allowed across organisations too (admin always is), e.g. police searching cameras.
    cross_org_roles: frozenset[Role] = frozenset({Role.admin})
    # Routes without a token requirement (health, login) set this to their anonymous status.
    anon: int = 401
    # Per (role, own) overrides for the few places where the rule is not uniform.
    overrides: dict[tuple[Role, bool], int] = field(default_factory=dict)
    # How the caller signs in: the API's Bearer header, or the web interface's session cookie.
    auth: Literal["bearer", "cookie"] = "bearer"

    def expected(self, role: Role | None, own: bool) -> int:
        if role is None:
            return self.anon
        if (role, own) in self.overrides:
            return self.overrides[(role, own)]
        if role not in self.roles:
            return 403
        if own or role in self.cross_org_roles or self.other_org is None:
            return self.ok
        return self.other_org


ALL_ROLES = frozenset(Role)


def roles(*names: str) -> frozenset[Role]:
    return frozenset(Role(n) for n in names)
