"""Factories for test data, in one place. They go through the services, like the API does."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sqlalchemy.orm import Session

from vms.core import accounts
from vms.core.auth import Principal, issue_token, principal_for
from vms.core.models import Organisation, Role, User

_seq = itertools.count(1)


@dataclass
class Actor:
    """A user with a token, ready to call the API."""

    user: User
    token: str
    principal: Principal

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def organisation_id(self) -> int:
        return self.user.organisation_id


class Factory:
    def __init__(self, session: Session) -> None:
        self.session = session

    def org(self, name: str | None = None) -> Organisation:
        return accounts.create_organisation(
            session=self.session, actor=None, name=name or f"Org {next(_seq)}"
        )

    def user(
        self,
        role: Role | str,
        org: Organisation | None = None,
        *,
        email: str | None = None,
        password: str | None = "correct horse battery",
        dpo_orgs: list[Organisation] | None = None,
    ) -> Actor:
        role = Role(role)
        org = org or self.org()
        user = accounts.create_user(
            session=self.session,
            actor=None,
            email=email or f"{role.value}{next(_seq)}@example.se",
            organisation_id=org.id,
            role=role,
            password=password,
        )
        for other in dpo_orgs or []:
            accounts.assign_dpo(
                session=self.session,
                actor=principal_for(self.session, user),
                user_id=user.id,
                organisation_id=other.id,
            )
        token, _ = issue_token(self.session, user=user, ttl_hours=1)
        return Actor(user=user, token=token, principal=principal_for(self.session, user))
