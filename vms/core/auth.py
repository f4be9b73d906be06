"""Who is asking: passwords, opaque bearer tokens and the principal every service checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from vms.core.db import utcnow
from vms.core.errors import Forbidden, NotFound, Unauthorized
from vms.core.models import ApiToken, DpoAssignment, Role, User

_hasher = PasswordHasher()
TOKEN_PREFIX = "vms_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The authenticated user, with what their role lets them reach."""

    user_id: int
    email: str
    organisation_id: int
    role: Role
    dpo_organisation_ids: frozenset[int] = field(default_factory=frozenset)
    token_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    def readable_org_ids(self) -> set[int] | None:
        """None means every organisation."""
        if self.is_admin:
            return None
        return {self.organisation_id, *self.dpo_organisation_ids}

    def read_scope(self, organisation_id: int | None = None) -> set[int] | None:
        """The organisations a read covers: the one asked for (404 if it may not be read), or
        every readable one; None means all of them."""
        if organisation_id is not None:
            self.require_read(organisation_id, "organisation")
            return {organisation_id}
        return self.readable_org_ids()

    def can_read_org(self, organisation_id: int) -> bool:
        ids = self.readable_org_ids()
        return ids is None or organisation_id in ids

    def can_write_org(self, organisation_id: int) -> bool:
        return self.is_admin or organisation_id == self.organisation_id

    def require_role(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this action needs one of the roles: {allowed}")

    def require_read(self, organisation_id: int, what: str = "resource") -> None:
        # 404, not 403: a user outside the organisation must not learn that the thing exists.
        if not self.can_read_org(organisation_id):
            raise NotFound(f"{what} not found")

    def require_write(self, organisation_id: int, what: str = "resource") -> None:
        if not self.can_read_org(organisation_id):
            raise NotFound(f"{what} not found")
        if not self.can_write_org(organisation_id):
            raise Forbidden(f"you may not change this {what}")


def principal_for(session: Session, user: User, token_id: int | None = None) -> Principal:
    dpo_orgs: frozenset[int] = frozenset()
    if user.role is Role.dpo:
        dpo_orgs = frozenset(
            session.scalars(
                select(DpoAssignment.organisation_id).where(DpoAssignment.user_id == user.id)
            )
        )
    return Principal(
        user_id=user.id,
        email=user.email,
        organisation_id=user.organisation_id,
        role=user.role,
        dpo_organisation_ids=dpo_orgs,
        token_id=token_id,
    )


def issue_token(session: Session, *, user: User, ttl_hours: float) -> tuple[str, ApiToken]:
    """Create a token; the plaintext is returned once and never stored."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        token_hash=token_digest(plaintext),
        prefix=plaintext[:10],
        expires_at=utcnow() + dt.timedelta(hours=ttl_hours),
    )
    session.add(row)
    session.flush()
    return plaintext, row


def authenticate_token(session: Session, token: str) -> Principal:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    return _principal_of(session, row)


def authenticate_token_id(session: Session, token_id: int) -> Principal:
    """The principal of a token known by its id (a live-view ticket names the token it was
    issued under; a long-running view re-checks it): refused once revoked or expired."""
    return _principal_of(session, session.get(ApiToken, token_id))


def _principal_of(session: Session, row: ApiToken | None) -> Principal:
    now = utcnow()
    if row is None:
        raise Unauthorized("invalid token")
    if row.revoked_at is not None:
        raise Unauthorized("token revoked")
    if row.expires_at <= now:
        raise Unauthorized("token expired")
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise Unauthorized("user disabled")
    return principal_for(session, user, token_id=row.id)
