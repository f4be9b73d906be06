"""FastAPI dependencies: settings, the request's session (the only place that commits), the
authenticated principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from vms.core import browser
from vms.core.auth import Principal, authenticate_token
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import session_scope
from vms.core.errors import Unauthorized
from vms.core.models import Role


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessionmaker) as session:
        yield session


def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": commit before the response goes out, so a 2xx always means "stored".
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]

_bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/token")


def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return authenticate_token(session, credentials.credentials)
    # The web interface's session cookie (the Bearer header wins when both are sent).
    token = browser.session_token(request)
    if token is None:
        raise Unauthorized("missing bearer token")
    principal = authenticate_token(session, token)
    browser.require_csrf(request, secret=get_settings(request).secret_key_bytes(), token=token)
    return principal


def request_token(request: Request) -> str | None:
    """The token this request authenticated with: the Bearer header, else the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return browser.session_token(request)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> object:
    """Dependency factory: the route is only for these roles (403 otherwise)."""

    def _check(principal: PrincipalDep) -> Principal:
        principal.require_role(*roles)
        return principal

    return Depends(_check)


def client_address(request: Request) -> str:
    """The peer's address (behind a reverse proxy: run uvicorn with --proxy-headers and a
    trusted --forwarded-allow-ips so this is the client, not the proxy)."""
    return request.client.host if request.client is not None else "unknown"
