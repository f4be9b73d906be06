"""Routes for authentication, organisations, users and the audit log."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import AwareDatetime

from vms.core import accounts, audit, browser, signing
from vms.core.deps import (
    PrincipalDep,
    SecretBoxDep,
    SessionDep,
    SettingsDep,
    client_address,
    request_token,
)
from vms.core.errors import InvalidInput, NotFound
from vms.core.models import User
from vms.core.pagination import Page, PageDep
from vms.core.schemas import (
    AuditHeadRead,
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


def _user_read(session: SessionDep, user: User) -> UserRead:
    out = UserRead.model_validate(user)
    out.dpo_organisation_ids = accounts.dpo_org_ids(session=session, user_id=user.id)
    return out


@router.post("/auth/token", response_model=TokenRead, tags=["auth"])
def create_token(
    body: TokenRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenRead:
    """Exchange email and password for a bearer token (throttled: 429 with Retry-After)."""
    token, row = accounts.login(
        session=session,
        email=body.email,
        password=body.password,
        ttl_hours=settings.token_ttl_hours,
        client=client_address(request),
        throttle=request.app.state.login_throttle,
    )
    return TokenRead(access_token=token, expires_at=row.expires_at)


@router.post("/auth/revoke", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"])
def revoke_token(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """Revoke the token this request was made with."""
    token = request_token(request)
    assert token is not None  # the principal was authenticated with it
    accounts.revoke_token(session=session, principal=principal, token=token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    if token == browser.session_token(request):
        response.delete_cookie(browser.SESSION_COOKIE, path="/")
    return response


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
    body: OrganisationCreate, session: SessionDep, principal: PrincipalDep
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
    org = accounts.read_organisation(
        session=session, principal=principal, organisation_id=organisation_id
    )
    return OrganisationRead.model_validate(org)


@router.patch(
    "/organisations/{organisation_id}", response_model=OrganisationRead, tags=["organisations"]
)
def update_organisation(
    organisation_id: int, body: OrganisationUpdate, session: SessionDep, principal: PrincipalDep
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
    principal: PrincipalDep,
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
def create_user(body: UserCreate, session: SessionDep, principal: PrincipalDep) -> UserRead:
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
    return _user_read(
        session, accounts.get_user_or_raise(session=session, principal=principal, user_id=user_id)
    )


@router.patch("/users/{user_id}", response_model=UserRead, tags=["users"])
def update_user(
    user_id: int, body: UserUpdate, session: SessionDep, principal: PrincipalDep
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
def deactivate_user(user_id: int, session: SessionDep, principal: PrincipalDep) -> UserRead:
    """Deactivate a user and revoke their tokens (admin). Users are never erased: the audit
    log refers to them."""
    return _user_read(
        session, accounts.deactivate_user(session=session, actor=principal, user_id=user_id)
    )


@router.post("/users/{user_id}/dpo-assignments", response_model=UserRead, tags=["users"])
def assign_dpo(
    user_id: int, body: DpoAssignmentCreate, session: SessionDep, principal: PrincipalDep
) -> UserRead:
    """Let a DPO read an organisation's data (admin)."""
    user = accounts.assign_dpo(
        session=session, actor=principal, user_id=user_id, organisation_id=body.organisation_id
    )
    return _user_read(session, user)


@router.get("/audit", response_model=Page[AuditRead], tags=["audit"])
def list_audit(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    action: str | None = Query(None, max_length=64, description="exact, or with * wildcards"),
    actor_id: int | None = None,
    target_type: str | None = Query(None, max_length=64),
    target_id: str | None = Query(None, max_length=64),
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Page[AuditRead]:
    """Page through the audit log, newest first (admin: all; dpo: their organisations)."""
    rows, total = audit.read_page(
        session,
        principal,
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
def verify_audit(
    session: SessionDep,
    principal: PrincipalDep,
    expect_seq: int | None = Query(None, ge=1, description="an anchored head: its seq..."),
    expect_hash: str | None = Query(
        None, pattern="^[0-9a-f]{64}$", description="...and hash (from /audit/head)"
    ),
) -> AuditVerifyRead:
    """Walk the whole hash chain (admin, dpo: checking the log's integrity is the DPO's job);
    with an anchored head, the chain must still hold it (deleting the newest entries shows)."""
    if (expect_seq is None) != (expect_hash is None):
        raise InvalidInput("give expect_seq and expect_hash together", field="expect_hash")
    expect = (expect_seq, expect_hash) if expect_seq and expect_hash else None
    report = audit.verify_for(session, principal, expect)
    return AuditVerifyRead(**report.__dict__)


@router.get("/audit/head", response_model=AuditHeadRead, tags=["audit"])
def audit_head(
    session: SessionDep, principal: PrincipalDep, settings: SettingsDep, box: SecretBoxDep
) -> AuditHeadRead:
    """The chain's newest entry, signed with the installation's Ed25519 key (admin, dpo): keep
    it outside the database and give it back to `/audit/verify` later."""
    principal.require_role(*audit.READER_ROLES)
    last = audit.head(session)
    if last is None:
        raise NotFound("the audit log is empty")
    key, _ = signing.load_or_create(data_dir=settings.data_dir, box=box)
    statement = last.statement()
    return AuditHeadRead(
        seq=last.seq,
        hash=last.hash,
        at=last.at,
        statement=statement.decode(),
        signature=base64.b64encode(key.sign(statement)).decode(),
        key_fingerprint_sha256=key.fingerprint,
    )
