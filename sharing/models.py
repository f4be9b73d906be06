"""Sharing agreements, the cameras they cover, their documents, and recipients' stream sessions."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Enum, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vms.core.db import Base, utcnow


class AgreementStatus(enum.StrEnum):
    draft = "draft"
    in_force = "in_force"
    expired = "expired"  # ended by its terms (or ended early by the owner)
    revoked = "revoked"


class ShareScope(enum.StrEnum):
    live = "live"
    live_and_recordings = "live_and_recordings"


class SharingAgreement(Base):
    """The owner organisation lets the recipient organisation see some of its cameras."""

    __tablename__ = "sharing_agreements"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    recipient_organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(Text)
    legal_ground: Mapped[str] = mapped_column(Text)
    scope: Mapped[ShareScope] = mapped_column(Enum(ShareScope, native_enum=False, length=32))
    # A camera group: every camera of this site (now and later), besides the listed cameras.
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    valid_from: Mapped[dt.datetime]
    valid_until: Mapped[dt.datetime | None]
    owner_contact_name: Mapped[str | None] = mapped_column(String(200))
    owner_contact_email: Mapped[str | None] = mapped_column(String(320))
    owner_contact_phone: Mapped[str | None] = mapped_column(String(50))
    recipient_contact_name: Mapped[str | None] = mapped_column(String(200))
    recipient_contact_email: Mapped[str | None] = mapped_column(String(320))
    recipient_contact_phone: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[AgreementStatus] = mapped_column(
        Enum(AgreementStatus, native_enum=False, length=32), default=AgreementStatus.draft
    )
    created_by: Mapped[int | None]
    in_force_at: Mapped[dt.datetime | None]
    in_force_by: Mapped[int | None]
    ended_at: Mapped[dt.datetime | None]
    ended_by: Mapped[int | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SharingAgreementCamera(Base):
    __tablename__ = "sharing_agreement_cameras"

    agreement_id: Mapped[int] = mapped_column(
        ForeignKey("sharing_agreements.id", ondelete="CASCADE"), primary_key=True
    )
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"), primary_key=True, index=True)


class SharingAgreementDocument(Base):
    """The signed agreement (PDF), stored by SHA-256 like legal-basis documents."""

    __tablename__ = "sharing_agreement_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("sharing_agreements.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(500))
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    uploaded_by: Mapped[int | None]


class SharingSession(Base):
    """One recipient user's stream of one camera under one agreement: from issue to end."""

    __tablename__ = "sharing_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Public and unguessable: the relay's mount path and the digest user name.
    key: Mapped[str] = mapped_column(String(32), unique=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("sharing_agreements.id"), index=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id"), index=True)
    owner_organisation_id: Mapped[int] = mapped_column(Integer, index=True)
    recipient_organisation_id: Mapped[int] = mapped_column(Integer, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    user_email: Mapped[str] = mapped_column(String(320))
    token_id: Mapped[int | None]
    protocol: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    first_play_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    ended_by: Mapped[str | None] = mapped_column(String(32))
    viewed_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    plays: Mapped[int] = mapped_column(Integer, default=0)
