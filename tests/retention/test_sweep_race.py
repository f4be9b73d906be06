"""A hold placed while a sweep runs protects footage the sweep has not deleted yet: holds are
checked again for every batch, in the transaction that deletes it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from retention import service
from retention.models import Segment
from retention.sweep import SweepHooks
from tests.factories import Factory
from vms.core import audit
from vms.core.auth import principal_for
from vms.core.db import utcnow
from vms.core.models import Role, User

H = dt.timedelta(hours=1)


def test_a_hold_placed_mid_sweep_wins(iso_engine: Engine, data_dir: Path) -> None:
    now = utcnow()
    with Session(iso_engine, expire_on_commit=False) as session:
        f = Factory(session)
        org = f.org()
        camera = f.camera(org, retention_hours=1)
        old = [
            f.segment(camera, start=now - (10 - i) * H, minutes=10, data_dir=data_dir)
            for i in range(4)
        ]
        dpo = f.user(Role.dpo, org)
        session.commit()
    placed: list[int] = []

    def hold_the_rest(deleted: Sequence[int]) -> None:
        # Another request, in its own connection, commits a hold on what is left.
        if placed:
            return
        with Session(iso_engine) as other:
            user = other.get(User, dpo.user.id)
            assert user is not None
            rest = [s for s in old if s.id not in deleted]
            hold = service.create_hold(
                session=other,
                actor=principal_for(other, user),
                camera_ids=[camera.id],
                start=min(s.start for s in rest),
                end=max(s.end for s in rest),
                case_number="K-2026-4711",
                reason="placed while the sweep ran",
                expires_at=None,
            )
            other.commit()
            placed.append(hold.id)

    with Session(iso_engine) as session:
        report = service.sweep(
            session=session,
            data_dir=data_dir,
            now=now,
            batch_size=2,
            hooks=SweepHooks(after_batch=hold_the_rest),
        )
        left = list(session.scalars(select(Segment.id).order_by(Segment.id)))
        receipts, _ = service.list_receipts(session=session, principal=None, camera_id=camera.id)
        assert audit.verify_chain(session).ok
    assert placed
    assert report.deleted == 2
    assert left == [old[2].id, old[3].id]
    assert sorted(r.segment_id or 0 for r in receipts) == [old[0].id, old[1].id]
    assert all((data_dir / s.path).exists() for s in old[2:])
