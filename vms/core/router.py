"""Routes for authentication, organisations, users and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import AwareDatetime

from vms.core import accounts, audit
from vms.core.auth import Principal
from vms.core.deps import PrincipalDep, SessionDep, SettingsDep, require_roles
from vms.core.errors import NotFound
from vms.core.models import Role, User
from vms.core.pagination import Page, PageParams, page_params
from vms.core.schemas import (
    AuditRead,
    AuditVerifyRead,
    DpoAssignmentCreate,
    OrganisationCreate,
    OrganisationRead,
    OrganisationUpdate,
    TokenRead,
    TokenRequest,
    UserCreate,
    UserRead,
    UserUpdate,
)

router = APIRouter(prefix="/api/v1")
PageDep = Annotated[PageParams, Depends(page_params)]
AdminDep = Annotated[Principal, require_roles(Role.admin)]
AuditReaderDep = Annotated[Principal, require_roles(Role.admin, Role.dpo)]


def _user_read(session: SessionDep, user: User) -> UserRead:
    out = UserRead.model_validate(user)
    out.dpo_organisation_ids = accounts.dpo_org_ids(session=session, user_id=user.id)
    return out


@router.post("/auth/token", response_model=TokenRead, tags=["auth"])
def create_token(body: TokenRequest, session: SessionDep, settings: SettingsDep) -> TokenRead:
    """Exchange email and password for a bearer token."""
    token, row = accounts.login(
        session=session,
        email=body.email,
        password=body.password,
        ttl_hours=settings.token_ttl_hours,
    )
    return TokenRead(access_token=token, expires_at=row.expires_at)


@router.post("/auth/revoke", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"])
def revoke_token(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """Revoke the token this request was made with."""
    token = request.headers["authorization"].split(" ", 1)[1].strip()
    accounts.revoke_token(session=session, principal=principal, token=token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/me", response_model=UserRead, tags=["auth"])
def me(session: SessionDep, principal: PrincipalDep) -> UserRead:
    """The authenticated user."""
    user = accounts.get_user_or_raise(
        session=session, principal=principal, user_id=principal.user_id
    )
    return _user_read(session, user)


@router.get("/organisations", response_model=Page[OrganisationRead], tags=["organisations"])
def list_organisations(
    session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[OrganisationRead]:
    """Organisations the caller can see."""
    rows, total = accounts.list_organisations(session=session, principal=principal, page=page)
    return Page(
        items=[OrganisationRead.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "/organisations",
    response_model=OrganisationRead,
    status_code=status.HTTP_201_CREATED,
    tags=["organisations"],
)
def create_organisation(
    body: OrganisationCreate, session: SessionDep, principal: AdminDep
) -> OrganisationRead:
    """Create an organisation (admin)."""
    org = accounts.create_organisation(
        session=session, actor=principal, name=body.name, org_number=body.org_number
    )
    return OrganisationRead.model_validate(org)


@router.get(
    "/organisations/{organisation_id}", response_model=OrganisationRead, tags=["organisations"]
)
def get_organisation(
    organisation_id: int, session: SessionDep, principal: PrincipalDep
) -> OrganisationRead:
    """One organisation."""
    principal.require_read(organisation_id, "organisation")
    org = accounts.get_organisation_or_raise(session=session, organisation_id=organisation_id)
    return OrganisationRead.model_validate(org)


@router.patch(
    "/organisations/{organisation_id}", response_model=OrganisationRead, tags=["organisations"]
)
def update_organisation(
    organisation_id: int, body: OrganisationUpdate, session: SessionDep, principal: AdminDep
) -> OrganisationRead:
    """Rename or renumber an organisation (admin)."""
    org = accounts.update_organisation(
        session=session,
        actor=principal,
        organisation_id=organisation_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return OrganisationRead.model_validate(org)


@router.get("/users", response_model=Page[UserRead], tags=["users"])
def list_users(
    session: SessionDep,
    principal: AuditReaderDep,
    page: PageDep,
    organisation_id: int | None = None,
) -> Page[UserRead]:
    """Users of the organisations the caller can read (admin, dpo)."""
    rows, total = accounts.list_users(
        session=session, principal=principal, page=page, organisation_id=organisation_id
    )
    return Page(
        items=[_user_read(session, u) for u in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/users", response_model=UserRead, status_code=status.HTTP_201_CREATED, tags=["users"])
def create_user(body: UserCreate, session: SessionDep, principal: AdminDep) -> UserRead:
    """Create a user in an organisation (admin)."""
    user = accounts.create_user(
        session=session,
        actor=principal,
        email=str(body.email),
        organisation_id=body.organisation_id,
        role=body.role,
        name=body.name,
        password=body.password,
    )
    return _user_read(session, user)


@router.get("/users/{user_id}", response_model=UserRead, tags=["users"])
def get_user(user_id: int, session: SessionDep, principal: PrincipalDep) -> UserRead:
    """One user: yourself, or users you may read (admin, dpo)."""
    if user_id != principal.user_id and principal.role not in (Role.admin, Role.dpo):
        raise NotFound("user not found")
    return _user_read(
        session, accounts.get_user_or_raise(session=session, principal=principal, user_id=user_id)
    )


@router.patch("/users/{user_id}", response_model=UserRead, tags=["users"])
def update_user(
    user_id: int, body: UserUpdate, session: SessionDep, principal: AdminDep
) -> UserRead:
    """Change a user's name, role, password or active flag (admin)."""
    user = accounts.update_user(
        session=session,
        actor=principal,
        user_id=user_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return _user_read(session, user)


@router.delete("/users/{user_id}", response_model=UserRead, tags=["users"])
def deactivate_user(user_id: int, session: SessionDep, principal: AdminDep) -> UserRead:
    """Deactivate a user and revoke their tokens (admin). Users are never erased: the audit
    log refers to them."""
    return _user_read(
        session, accounts.deactivate_user(session=session, actor=principal, user_id=user_id)
    )


@router.post("/users/{user_id}/dpo-assignments", response_model=UserRead, tags=["users"])
def assign_dpo(
    user_id: int, body: DpoAssignmentCreate, session: SessionDep, principal: AdminDep
) -> UserRead:
    """Let a DPO read an organisation's data (admin)."""
    user = accounts.assign_dpo(
        session=session, actor=principal, user_id=user_id, organisation_id=body.organisation_id
    )
    return _user_read(session, user)


@router.get("/audit", response_model=Page[AuditRead], tags=["audit"])
def list_audit(
    session: SessionDep,
    principal: AuditReaderDep,
    page: PageDep,
    action: str | None = Query(None, max_length=64, description="exact, or with * wildcards"),
    actor_id: int | None = None,
    target_type: str | None = Query(None, max_length=64),
    target_id: str | None = Query(None, max_length=64),
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Page[AuditRead]:
    """Page through the audit log, newest first (admin: all; dpo: their organisations)."""
    rows, total = audit.list_entries(
        session,
        organisation_ids=principal.readable_org_ids(),
        limit=page.limit,
        offset=page.offset,
        action=action,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
    )
    return Page(
        items=[AuditRead.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/audit/verify", response_model=AuditVerifyRead, tags=["audit"])
def verify_audit(session: SessionDep, principal: AdminDep) -> AuditVerifyRead:
    """Walk the whole hash chain (admin)."""
    report = audit.verify_chain(session)
    return AuditVerifyRead(**report.__dict__)
