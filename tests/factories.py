"""Factories for test data, in one place. They go through the services, like the API does."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from permits.models import BasisKind, BasisStatus, LegalBasis
from registry.models import Camera, CameraMode, CameraStatus, MaskPlanVersion, Site, SourceKind
from vms.core import accounts
from vms.core.auth import Principal, issue_token, principal_for
from vms.core.crypto import SecretBox, split_credentials
from vms.core.db import utcnow
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

    # --- registry and legal basis -------------------------------------------------------------
    # These build rows directly (not through registry.service) so that tests can also create
    # records the API would refuse (conflicts, expired bases). Credentials are encrypted with
    # the test installation key, exactly as the service stores them.

    def site(
        self,
        org: Organisation | None = None,
        *,
        name: str | None = None,
        address: str | None = None,
    ) -> Site:
        org = org or self.org()
        row = Site(
            organisation_id=org.id,
            name=name or f"Site {next(_seq)}",
            address=address or "Storgatan 1, 111 22 Stockholm",
        )
        self.session.add(row)
        self.session.flush()
        return row

    def basis(
        self,
        org: Organisation | None = None,
        *,
        kind: BasisKind | str = BasisKind.assessment,
        status: BasisStatus | str = BasisStatus.in_force,
        live_view_allowed: bool = True,
        recording_allowed: bool = True,
        max_retention_hours: int = 72,
        **fields: Any,
    ) -> LegalBasis:
        """An in-force interest assessment allowing live view and recording, 72 h, by default."""
        org = org or self.org()
        kind = BasisKind(kind)
        values: dict[str, Any] = {
            "organisation_id": org.id,
            "kind": kind,
            "status": BasisStatus(status),
            "title": f"Intresseavvägning {next(_seq)}",
            "purpose": "Förebygga brott och skadegörelse",
            "live_view_allowed": live_view_allowed,
            "recording_allowed": recording_allowed,
            "max_retention_hours": max_retention_hours,
            "masking_required": True,
        }
        if kind is BasisKind.assessment:
            values |= {
                "less_intrusive_measures": "Belysning och väktare har prövats utan effekt",
                "covered_area": "Entré och cykelrum",
                "decided_by": "Styrelsen",
                "decided_at": utcnow() - dt.timedelta(days=1),
                "review_by": (utcnow() + dt.timedelta(days=365)).date(),
            }
        elif kind is BasisKind.permit:
            values |= {
                "authority": "IMY",
                "case_number": f"DI-2023-{next(_seq)}",
                "decision_date": (utcnow() - dt.timedelta(days=400)).date(),
                "valid_from": utcnow() - dt.timedelta(days=400),
                "valid_until": utcnow() + dt.timedelta(days=365),
            }
        else:
            values["not_required_reason"] = "Platsen är inte allmänt tillgänglig"
        values |= fields
        row = LegalBasis(**values)
        self.session.add(row)
        self.session.flush()
        return row

    def camera(
        self,
        org: Organisation | None = None,
        *,
        basis: LegalBasis | Literal["new"] | None = "new",
        site: Site | None = None,
        name: str | None = None,
        mode: CameraMode | str = CameraMode.live_and_recording,
        retention_hours: int = 72,
        status: CameraStatus | str = CameraStatus.active,
        source: dict[str, Any] | None = None,
        schedule: list[dict[str, Any]] | None = None,
        mask_plan: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Camera:
        """An active camera with an RTSP source and (unless `basis=None`) a fresh in-force basis
        of the same organisation. `source` takes the API shape, e.g.
        `{"kind": "rtsp", "url": "rtsp://user:pw@127.0.0.1:8554/cam"}` (credentials encrypted)."""
        org = org or self.org()
        if basis == "new":
            basis = self.basis(org)
        src = dict(source or {"kind": "rtsp", "url": "rtsp://127.0.0.1:8554/cam"})
        kind = SourceKind(src.pop("kind"))
        username, password = src.pop("username", None), src.pop("password", None)
        url = src.pop("url", None)
        if url is not None:
            url, url_user, url_password = split_credentials(url)
            username, password = username or url_user, password or url_password
        secret = None
        if username or password:
            secret = _test_box().encrypt(json.dumps({"username": username, "password": password}))
        status = CameraStatus(status)
        values: dict[str, Any] = {
            "organisation_id": org.id,
            "site_id": site.id if site else None,
            "name": name or f"Camera {next(_seq)}",
            "owner_contact_name": "Fastighetsansvarig",
            "owner_contact_email": "fastighet@example.se",
            "address": "Storgatan 1, 111 22 Stockholm",
            "lat": 59.3293,
            "lon": 18.0686,
            "purpose": "Förebygga skadegörelse vid entrén",
            "purpose_category": "property_protection",
            "mode": CameraMode(mode),
            "retention_hours": retention_hours,
            "legal_basis_id": basis.id if basis is not None else None,
            "source_kind": kind,
            "source_url": url,
            "source_host": src.pop("host", None),
            "source_port": src.pop("port", None),
            "source_profile_token": src.pop("profile_token", None),
            "source_path": src.pop("path", None),
            "source_secret": secret,
            "schedule": schedule or [],
            "signage_posted": True,
            "signage_text": "Kamerabevakning",
            "status": status,
            "decommissioned_at": utcnow() if status is CameraStatus.decommissioned else None,
        }
        if src:
            raise TypeError(f"unknown source fields: {sorted(src)}")
        values |= fields
        row = Camera(**values)
        self.session.add(row)
        self.session.flush()
        if mask_plan is not None:
            from masking import plan_hash

            row.mask_plan = mask_plan
            row.mask_plan_hash = plan_hash(mask_plan)
            self.session.add(
                MaskPlanVersion(camera_id=row.id, plan_hash=row.mask_plan_hash, plan=mask_plan)
            )
            self.session.flush()
        return row


def _test_box() -> SecretBox:
    # The key the `settings` fixture uses, so the app under test can decrypt what we store.
    from tests.conftest import TEST_KEY

    return SecretBox(TEST_KEY.encode())
