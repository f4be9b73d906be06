"""The camera lease: which camera actor may write a camera's footage index, and its epoch."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vms.core.db import Base, utcnow


class CameraLease(Base):
    """One row per camera that ever ran on the cluster. `epoch` grows by one at every
    acquisition and is the fencing token: a write that carries an older epoch is refused.
    `holder` is None once released cleanly."""

    __tablename__ = "camera_leases"

    camera_id: Mapped[int] = mapped_column(
        ForeignKey("cameras.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    epoch: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    holder: Mapped[str | None] = mapped_column(String(200))
    node_id: Mapped[str | None] = mapped_column(String(64))
    pid: Mapped[int | None]
    acquired_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    renewed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
