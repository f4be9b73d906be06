"""Organisations, users and tokens: the service layer (no HTTP here)."""

from __future__ import annotations

import functools
import secrets

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
from vms.core.db import count_rows, end_transaction, utcnow
from vms.core.errors import Conflict, InvalidInput, NotFound, TooManyRequests, Unauthorized
from vms.core.models import ApiToken, DpoAssignment, Organisation, Role, User
from vms.core.pagination import PageParams
from vms.core.throttle import Limits, LoginThrottle, email_digest

# Who manages accounts: admin; who reads them (and the audit log): admin and DPOs.
MANAGERS = (Role.admin,)
READERS = (Role.admin, Role.dpo)

# --- organisations -------------------------------------------------------------------------


def get_organisation(*, session: Session, organisation_id: int) -> Organisation | None:
    return session.get(Organisation, organisation_id)


def read_organisation(
    *, session: Session, principal: Principal, organisation_id: int
) -> Organisation:
    """One organisation the principal may read."""
    principal.require_read(organisation_id, "organisation")
    return get_organisation_or_raise(session=session, organisation_id=organisation_id)


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
    if actor is not None:
        actor.require_role(*MANAGERS)
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
    actor.require_role(*MANAGERS)
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


def target_org(*, session: Session, actor: Principal | None, requested: int | None) -> int:
    """The organisation a new record goes into: the caller's own unless they name another,
    which only admin may (others get 404 for an organisation they cannot see, 403 otherwise)."""
    if actor is None:
        if requested is None:
            raise InvalidInput("organisation_id is required", field="organisation_id")
        org_id = requested
    else:
        org_id = requested if requested is not None else actor.organisation_id
        actor.require_write(org_id, "organisation")
    get_organisation_or_raise(session=session, organisation_id=org_id)
    return org_id


# --- users ---------------------------------------------------------------------------------


def get_user_or_raise(*, session: Session, principal: Principal, user_id: int) -> User:
    """Yourself, or a user admin or a DPO may read (others are not found)."""
    if user_id != principal.user_id and principal.role not in READERS:
        raise NotFound("user not found")
    user = session.get(User, user_id)
    if user is None or not (
        principal.can_read_org(user.organisation_id) or user.id == principal.user_id
    ):
        raise NotFound("user not found")
    return user


def get_user_by_email(*, session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def dpo_org_ids(*, session: Session, user_id: int) -> list[int]:
    return sorted(
        session.scalars(
            select(DpoAssignment.organisation_id).where(DpoAssignment.user_id == user_id)
        )
    )


def list_users(
    *, session: Session, principal: Principal, page: PageParams, organisation_id: int | None = None
) -> tuple[list[User], int]:
    principal.require_role(*READERS)
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
    if actor is not None:
        actor.require_role(*MANAGERS)
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
    actor.require_role(*MANAGERS)
    user = get_user_or_raise(session=session, principal=actor, user_id=user_id)
    nulls = [k for k in ("role", "active", "password") if k in changes and changes[k] is None]
    if nulls:
        raise InvalidInput("must not be null", field=nulls[0])
    logged: dict[str, object] = {}
    for key, value in changes.items():
        if key == "password":
            user.password_hash = hash_password(str(value))
            logged["password"] = "changed"
        else:
            setattr(user, key, value)
            logged[key] = value.value if isinstance(value, Role) else value
    if changes.get("active") is False or "password" in changes:
        # A changed password ends every session: whoever had the old one is out.
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


def assign_dpo(
    *, session: Session, actor: Principal | None, user_id: int, organisation_id: int
) -> User:
    """Let a DPO read an organisation (actor None: the console or set-up code)."""
    if actor is not None:
        actor.require_role(*MANAGERS)
        user = get_user_or_raise(session=session, principal=actor, user_id=user_id)
    else:
        found = session.get(User, user_id)
        if found is None:
            raise NotFound("user not found")
        user = found
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


def login(
    *,
    session: Session,
    email: str,
    password: str,
    ttl_hours: float,
    client: str = "unknown",
    throttle: LoginThrottle | None = None,
) -> tuple[str, ApiToken]:
    """Exchange email + password for a token. Failures say nothing specific, cost the same
    whether the account exists or not, are throttled per account and per client address (429
    with Retry-After), and are audited without letting a flood fill the log: an existing
    account's failures one by one (the throttle bounds them), made-up names as one summary a
    minute, never the text a client typed as an email."""
    email = email.strip().lower()
    throttle = throttle or _NO_THROTTLE
    refusal = throttle.check(email, client)
    if refusal is not None:
        raise TooManyRequests(
            f"too many failed sign-ins for this {refusal.scope}: try again in "
            f"{refusal.retry_after_s} s",
            refusal.retry_after_s,
        )
    user = session.scalar(select(User).where(User.email == email))
    # Hashing takes tens of milliseconds: not while this request holds the database.
    end_transaction(session)
    known = user is not None and user.active and user.password_hash is not None
    # The same argon2 work for an unknown email: response times must not tell who exists.
    ok = verify_password(user.password_hash if user and known else _dummy_hash(), password)
    if not (known and ok):
        if user is not None:
            audit.record(
                session,
                action="auth.login_failed",
                organisation_id=user.organisation_id,
                target_type="user",
                target_id=user.id,
                details={"email": user.email, "client": client},
            )
        else:
            summary = throttle.unknown_failure(email_digest(email), client)
            if summary is not None:
                audit.record(
                    session,
                    action="auth.login_failed_unknown",
                    target_type="user",
                    details={
                        "failures": summary.count,
                        "clients": sorted(summary.addresses)[:20],
                        "email_digests": summary.samples,
                    },
                )
        throttle.failed(email, client)
        # The failed attempt must be kept even though the request fails.
        session.commit()
        raise Unauthorized("wrong email or password")
    assert user is not None
    throttle.succeeded(email)
    plaintext, row = issue_token(session, user=user, ttl_hours=ttl_hours)
    actor = principal_for(session, user)
    audit.record(
        session,
        action="auth.login",
        actor=actor,
        target_type="user",
        target_id=user.id,
        details={"client": client},
    )
    audit.record(
        session,
        action="token.create",
        actor=actor,
        target_type="token",
        target_id=row.id,
        details={"prefix": row.prefix, "expires_at": row.expires_at.isoformat()},
    )
    return plaintext, row


# A throttle that never refuses, for callers without one (the CLI creates tokens directly).
_NO_THROTTLE = LoginThrottle(Limits(account_failures=1_000_000, address_failures=1_000_000))


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


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
