"""Request and response bodies of the core routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from vms.core.models import Role


def find_nul(value: Any, path: str = "") -> str | None:
    """The path of the first string holding a NUL character (PostgreSQL text cannot store one)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            hit = find_nul(key, path) or find_nul(item, f"{path}.{key}" if path else str(key))
            if hit is not None:
                return hit
    if isinstance(value, list):
        for i, item in enumerate(value):
            hit = find_nul(item, f"{path}.{i}" if path else str(i))
            if hit is not None:
                return hit
    return None


class StrictModel(BaseModel):
    """Every request body: unknown fields are refused (a typo must not be silently ignored), and
    so are NUL characters (PostgreSQL cannot store them; SQLite would, and the two must agree)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        where = find_nul(data)
        if where is not None:
            raise ValueError(f"text must not contain NUL characters (at {where or 'the body'})")
        return data


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


class AuditHeadRead(BaseModel):
    seq: int
    hash: str
    at: dt.datetime
    statement: str = Field(description="the exact text that is signed")
    signature: str = Field(description="Ed25519 over `statement`, base64")
    key_fingerprint_sha256: str


class HealthRead(BaseModel):
    status: str
    version: str
    database: str
