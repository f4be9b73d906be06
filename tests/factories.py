"""Factories for test data, in one place. They go through the services, like the API does."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import Session

from permits.models import BasisKind, BasisStatus, LegalBasis
from registry.models import Camera, CameraMode, CameraStatus, MaskPlanVersion, Site, SourceKind
from retention.models import LegalHold, Segment
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
                actor=None,
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
            "source_live_profile_token": src.pop("live_profile_token", None),
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

    def segment(
        self,
        camera: Camera,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        minutes: float = 10,
        data_dir: Path | None = None,
        content: bytes | None = None,
        size_bytes: int | None = None,
    ) -> Segment:
        """An indexed segment through retention.service.add_segment. With `data_dir`, its file
        is written too (placeholder bytes unless `content` is given: tests of the index and the
        sweep do not decode)."""
        from retention import service as retention_service
        from retention.paths import relative_segment_path

        start = start or utcnow() - dt.timedelta(minutes=minutes)
        end = end or start + dt.timedelta(minutes=minutes)
        rel = relative_segment_path(camera.id, start)
        data = content if content is not None else f"{camera.id}:{start.isoformat()}".encode()
        if data_dir is not None:
            path = data_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return retention_service.add_segment(
            session=self.session,
            camera_id=camera.id,
            start=start,
            end=end,
            path=rel,
            size_bytes=size_bytes if size_bytes is not None else len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            mask_plan_hash=camera.mask_plan_hash,
            codec="h264",
            width=64,
            height=48,
            frames=25,
        )

    def hold(
        self,
        cameras: list[Camera],
        *,
        by: Actor | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        case_number: str | None = None,
        reason: str = "Skadegörelse, förundersökning",
        expires_at: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> LegalHold:
        """A legal hold through retention.service.create_hold (by a new admin unless `by`)."""
        from retention import service as retention_service

        actor = by or self.user(Role.admin, password=None)
        now = now or utcnow()
        return retention_service.create_hold(
            session=self.session,
            actor=actor.principal,
            camera_ids=[c.id for c in cameras],
            start=start or now - dt.timedelta(days=30),
            end=end or now,
            case_number=case_number or f"K{next(_seq)}-25",
            reason=reason,
            expires_at=expires_at,
            now=now,
        )

    # --- exports -------------------------------------------------------------------------------

    def recording(
        self,
        camera: Camera,
        data_dir: Path,
        *,
        start: dt.datetime,
        segments: int = 3,
        seconds: int = 3,
        fps: int = 10,
        bframes: int = 0,
    ) -> list[Segment]:
        """Real H.264 segments (frames stamped with their index, see tests/export/media.py),
        back to back from `start`, written under `data_dir` and indexed."""
        import tempfile

        from tests.media import make_segment

        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(segments):
                made = make_segment(
                    Path(tmp) / f"{i}.mp4",
                    start=start + dt.timedelta(seconds=i * seconds),
                    first_index=i * seconds * fps,
                    frames=seconds * fps,
                    fps=fps,
                    bframes=bframes,
                )
                rows.append(
                    self.segment(
                        camera,
                        start=made.start,
                        end=made.end,
                        data_dir=data_dir,
                        content=made.path.read_bytes(),
                    )
                )
        return rows

    def export_request(
        self,
        camera: Camera,
        requester: Actor | None = None,
        *,
        status: str = "requested",
        data_dir: Path | None = None,
        case_number: str | None = None,
    ) -> Any:
        """A police export request for `camera` through the export service (placeholder footage
        is indexed first). Later states are set directly; `ready`/`downloaded` need `data_dir`
        and get a small zip as the package."""
        from vms.export import service as export_service
        from vms.export.models import ExportStatus
        from vms.export.schemas import ExportCreate

        requester = requester or self.user(Role.police, password=None)
        now = utcnow()
        start = now - dt.timedelta(minutes=30)
        self.segment(camera, start=start, end=start + dt.timedelta(minutes=10))
        req = export_service.create_request(
            session=self.session,
            actor=requester.principal,
            data=ExportCreate.model_validate(
                {
                    "case_number": case_number or f"5000-K{next(_seq)}-25",
                    "legal_ground": {"category": "preliminary_investigation", "text": "RB 27 kap."},
                    "officer": "Anna Andersson",
                    "unit": "LPO City",
                    "camera_ids": [camera.id],
                    "start": start,
                    "end": start + dt.timedelta(minutes=5),
                    "reason": "Misshandel vid entrén",
                }
            ),
        )
        req.status = ExportStatus(status)
        if req.status in (ExportStatus.ready, ExportStatus.downloaded):
            assert data_dir is not None, "a ready package needs data_dir"
            rel = f"exports/export-{req.id}.zip"
            path = data_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip
            req.package_path = rel
            req.package_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
            req.package_size = path.stat().st_size
            req.expires_at = now + dt.timedelta(hours=1)
        self.session.flush()
        return req


def _test_box() -> SecretBox:
    # The key the `settings` fixture uses, so the app under test can decrypt what we store.
    from tests.conftest import TEST_KEY

    return SecretBox(TEST_KEY.encode())
