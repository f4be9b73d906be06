"""Request and response bodies of the core routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from vms.core.models import Role


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TokenRequest(StrictModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: dt.datetime


class OrganisationCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    org_number: str | None = Field(None, max_length=32)


class OrganisationUpdate(StrictModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    org_number: str | None = Field(None, max_length=32)


class OrganisationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    org_number: str | None
    created_at: dt.datetime


class UserCreate(StrictModel):
    email: EmailStr
    organisation_id: int
    role: Role
    name: str | None = Field(None, max_length=200)
    password: str | None = Field(None, min_length=8, max_length=1024)


class UserUpdate(StrictModel):
    name: str | None = Field(None, max_length=200)
    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(None, min_length=8, max_length=1024)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str | None
    organisation_id: int
    role: Role
    active: bool
    created_at: dt.datetime
    dpo_organisation_ids: list[int] = []


class DpoAssignmentCreate(StrictModel):
    organisation_id: int


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int
    at: dt.datetime
    actor_id: int | None
    actor_email: str | None
    organisation_id: int | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditVerifyRead(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None
    first_bad_id: int | None
    problem: str | None


class HealthRead(BaseModel):
    status: str
    version: str
    database: str
