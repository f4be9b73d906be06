"""FastAPI dependencies: settings, the request's session (the only place that commits), the
authenticated principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from vms.core.auth import Principal, authenticate_token
from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.errors import Unauthorized
from vms.core.models import Role


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": commit before the response goes out, so a 2xx always means "stored".
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]

_bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/token")


def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    return authenticate_token(session, credentials.credentials)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> object:
    """Dependency factory: the route is only for these roles (403 otherwise)."""

    def _check(principal: PrincipalDep) -> Principal:
        principal.require_role(*roles)
        return principal

    return Depends(_check)
