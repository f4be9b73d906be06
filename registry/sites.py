"""Sites: the buildings or areas an organisation's cameras belong to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.models import Site
from registry.schemas import SiteCreate
from registry.service import READERS, WRITERS
from vms.core import accounts, audit
from vms.core.auth import Principal
from vms.core.db import count_rows
from vms.core.errors import Conflict, InvalidInput, NotFound
from vms.core.pagination import PageParams


def get_site_or_raise(
    *, session: Session, site_id: int, principal: Principal | None = None
) -> Site:
    """The site, if it exists and the principal (when given) may read it."""
    if principal is not None:
        principal.require_role(*READERS)
    site = session.get(Site, site_id)
    if site is None or (principal is not None and not principal.can_read_org(site.organisation_id)):
        raise NotFound("site not found", field="site_id")
    return site


def list_sites(
    *, session: Session, principal: Principal, page: PageParams, organisation_id: int | None = None
) -> tuple[list[Site], int]:
    principal.require_role(*READERS)
    stmt = select(Site)
    scope = principal.read_scope(organisation_id)
    if scope is not None:
        stmt = stmt.where(Site.organisation_id.in_(scope))
    total = count_rows(session, stmt)
    rows = session.scalars(stmt.order_by(Site.id).limit(page.limit).offset(page.offset))
    return list(rows), total


def list_organisation_sites(*, session: Session, organisation_id: int) -> list[Site]:
    return list(session.scalars(select(Site).where(Site.organisation_id == organisation_id)))


def find_site(*, session: Session, organisation_id: int, name: str) -> Site | None:
    return session.scalar(
        select(Site)
        .where(Site.organisation_id == organisation_id, Site.name == name)
        .order_by(Site.id)
        .limit(1)
    )


def create_site(
    *,
    session: Session,
    actor: Principal | None,
    data: SiteCreate,
    organisation_id: int | None = None,
) -> Site:
    if actor is not None:
        actor.require_role(*WRITERS)
    org_id = accounts.target_org(
        session=session,
        actor=actor,
        requested=organisation_id if organisation_id is not None else data.organisation_id,
    )
    if find_site(session=session, organisation_id=org_id, name=data.name) is not None:
        raise Conflict(f"a site named {data.name!r} already exists", field="name")
    site = Site(organisation_id=org_id, name=data.name, address=data.address)
    session.add(site)
    session.flush()
    audit.record(
        session,
        action="site.create",
        actor=actor,
        organisation_id=org_id,
        target_type="site",
        target_id=site.id,
        details={"name": site.name},
    )
    return site


def update_site(
    *, session: Session, actor: Principal, site_id: int, changes: dict[str, Any]
) -> Site:
    actor.require_role(*WRITERS)
    site = get_site_or_raise(session=session, site_id=site_id, principal=actor)
    actor.require_write(site.organisation_id, "site")
    if "name" in changes:
        if changes["name"] is None:
            raise InvalidInput("must not be null", field="name")
        other = find_site(
            session=session, organisation_id=site.organisation_id, name=changes["name"]
        )
        if other is not None and other.id != site.id:
            raise Conflict(f"a site named {changes['name']!r} already exists", field="name")
    changed = sorted(k for k, v in changes.items() if getattr(site, k) != v)
    for key, value in changes.items():
        setattr(site, key, value)
    session.flush()
    if changed:
        audit.record(
            session,
            action="site.update",
            actor=actor,
            organisation_id=site.organisation_id,
            target_type="site",
            target_id=site.id,
            details={"fields": changed},
        )
    return site
