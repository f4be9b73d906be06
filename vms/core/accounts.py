"""Organisations, users and tokens: the service layer (no HTTP here)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vms.core import audit
from vms.core.auth import (
    Principal,
    authenticate_token,
    hash_password,
    issue_token,
    principal_for,
    token_digest,
    verify_password,
)
from vms.core.db import count_rows, utcnow
from vms.core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from vms.core.models import ApiToken, DpoAssignment, Organisation, Role, User
from vms.core.pagination import PageParams

# --- organisations -------------------------------------------------------------------------


def get_organisation(*, session: Session, organisation_id: int) -> Organisation | None:
    return session.get(Organisation, organisation_id)


def get_organisation_or_raise(*, session: Session, organisation_id: int) -> Organisation:
    org = session.get(Organisation, organisation_id)
    if org is None:
        raise NotFound("organisation not found")
    return org


def get_organisation_by_name(*, session: Session, name: str) -> Organisation | None:
    return session.scalar(select(Organisation).where(Organisation.name == name))


def list_organisations(
    *, session: Session, principal: Principal, page: PageParams
) -> tuple[list[Organisation], int]:
    stmt = select(Organisation)
    ids = principal.readable_org_ids()
    if ids is not None:
        stmt = stmt.where(Organisation.id.in_(ids))
    total = count_rows(session, stmt)
    rows = session.scalars(stmt.order_by(Organisation.id).limit(page.limit).offset(page.offset))
    return list(rows), total


def create_organisation(
    *, session: Session, actor: Principal | None, name: str, org_number: str | None = None
) -> Organisation:
    if get_organisation_by_name(session=session, name=name) is not None:
        raise Conflict(f"an organisation named {name!r} already exists", field="name")
    org = Organisation(name=name, org_number=org_number)
    session.add(org)
    session.flush()
    audit.record(
        session,
        action="organisation.create",
        actor=actor,
        organisation_id=org.id,
        target_type="organisation",
        target_id=org.id,
        details={"name": name},
    )
    return org


def update_organisation(
    *, session: Session, actor: Principal, organisation_id: int, changes: dict[str, object]
) -> Organisation:
    org = get_organisation_or_raise(session=session, organisation_id=organisation_id)
    if "name" in changes and changes["name"] != org.name:
        other = get_organisation_by_name(session=session, name=str(changes["name"]))
        if other is not None:
            raise Conflict(f"an organisation named {changes['name']!r} already exists", "name")
    for key, value in changes.items():
        setattr(org, key, value)
    session.flush()
    audit.record(
        session,
        action="organisation.update",
        actor=actor,
        organisation_id=org.id,
        target_type="organisation",
        target_id=org.id,
        details={"changes": changes},
    )
    return org


# --- users ---------------------------------------------------------------------------------


def get_user_or_raise(*, session: Session, principal: Principal, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not (
        principal.can_read_org(user.organisation_id) or user.id == principal.user_id
    ):
        raise NotFound("user not found")
    return user


def dpo_org_ids(*, session: Session, user_id: int) -> list[int]:
    return sorted(
        session.scalars(
            select(DpoAssignment.organisation_id).where(DpoAssignment.user_id == user_id)
        )
    )


def list_users(
    *, session: Session, principal: Principal, page: PageParams, organisation_id: int | None = None
) -> tuple[list[User], int]:
    stmt = select(User)
    ids = principal.readable_org_ids()
    if ids is not None:
        stmt = stmt.where(User.organisation_id.in_(ids))
    if organisation_id is not None:
        stmt = stmt.where(User.organisation_id == organisation_id)
    total = count_rows(session, stmt)
    rows = session.scalars(stmt.order_by(User.id).limit(page.limit).offset(page.offset))
    return list(rows), total


def create_user(
    *,
    session: Session,
    actor: Principal | None,
    email: str,
    organisation_id: int,
    role: Role,
    name: str | None = None,
    password: str | None = None,
) -> User:
    get_organisation_or_raise(session=session, organisation_id=organisation_id)
    email = email.strip().lower()
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email!r} already exists", field="email")
    user = User(
        email=email,
        name=name,
        organisation_id=organisation_id,
        role=role,
        password_hash=hash_password(password) if password else None,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a user with email {email!r} already exists", field="email") from exc
    audit.record(
        session,
        action="user.create",
        actor=actor,
        organisation_id=organisation_id,
        target_type="user",
        target_id=user.id,
        details={"email": email, "role": role.value},
    )
    return user


def update_user(
    *, session: Session, actor: Principal, user_id: int, changes: dict[str, object]
) -> User:
    user = get_user_or_raise(session=session, principal=actor, user_id=user_id)
    logged: dict[str, object] = {}
    for key, value in changes.items():
        if key == "password":
            user.password_hash = hash_password(str(value))
            logged["password"] = "changed"
        else:
            setattr(user, key, value)
            logged[key] = value.value if isinstance(value, Role) else value
    if changes.get("active") is False:
        _revoke_all(session, user.id)
    session.flush()
    audit.record(
        session,
        action="user.update",
        actor=actor,
        organisation_id=user.organisation_id,
        target_type="user",
        target_id=user.id,
        details={"changes": logged},
    )
    return user


def deactivate_user(*, session: Session, actor: Principal, user_id: int) -> User:
    return update_user(session=session, actor=actor, user_id=user_id, changes={"active": False})


def assign_dpo(*, session: Session, actor: Principal, user_id: int, organisation_id: int) -> User:
    user = get_user_or_raise(session=session, principal=actor, user_id=user_id)
    if user.role is not Role.dpo:
        raise InvalidInput("only users with role dpo can be assigned organisations", "user_id")
    get_organisation_or_raise(session=session, organisation_id=organisation_id)
    exists = session.scalar(
        select(DpoAssignment.id).where(
            DpoAssignment.user_id == user_id, DpoAssignment.organisation_id == organisation_id
        )
    )
    if exists is None:
        session.add(DpoAssignment(user_id=user_id, organisation_id=organisation_id))
        session.flush()
        audit.record(
            session,
            action="user.dpo_assign",
            actor=actor,
            organisation_id=organisation_id,
            target_type="user",
            target_id=user_id,
            details={"organisation_id": organisation_id},
        )
    return user


# --- tokens --------------------------------------------------------------------------------


def login(*, session: Session, email: str, password: str, ttl_hours: float) -> tuple[str, ApiToken]:
    """Exchange email + password for a token; failures are audited but say nothing specific."""
    email = email.strip().lower()
    user = session.scalar(select(User).where(User.email == email))
    if user is None or not user.active or not verify_password(user.password_hash, password):
        audit.record(
            session,
            action="auth.login_failed",
            organisation_id=user.organisation_id if user else None,
            target_type="user",
            target_id=user.id if user else None,
            details={"email": email},
        )
        # The failed attempt must be kept even though the request fails.
        session.commit()
        raise Unauthorized("wrong email or password")
    plaintext, row = issue_token(session, user=user, ttl_hours=ttl_hours)
    actor = principal_for(session, user)
    audit.record(session, action="auth.login", actor=actor, target_type="user", target_id=user.id)
    audit.record(
        session,
        action="token.create",
        actor=actor,
        target_type="token",
        target_id=row.id,
        details={"prefix": row.prefix, "expires_at": row.expires_at.isoformat()},
    )
    return plaintext, row


def create_token_for(
    *, session: Session, actor: Principal | None, user: User, ttl_hours: float
) -> tuple[str, ApiToken]:
    plaintext, row = issue_token(session, user=user, ttl_hours=ttl_hours)
    audit.record(
        session,
        action="token.create",
        actor=actor,
        organisation_id=user.organisation_id,
        target_type="token",
        target_id=row.id,
        details={"user_id": user.id, "prefix": row.prefix},
    )
    return plaintext, row


def revoke_token(*, session: Session, principal: Principal, token: str) -> None:
    authenticate_token(session, token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    assert row is not None
    row.revoked_at = utcnow()
    session.flush()
    audit.record(
        session,
        action="token.revoke",
        actor=principal,
        target_type="token",
        target_id=row.id,
        details={"prefix": row.prefix},
    )


def _revoke_all(session: Session, user_id: int) -> None:
    now = utcnow()
    for row in session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    ):
        row.revoked_at = now
