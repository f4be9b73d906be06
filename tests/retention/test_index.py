"""The footage index as the pipeline writes it and the recordings routes read it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from retention import service
from retention.models import Gap, Segment, SegmentState
from tests.factories import Factory
from vms.core.db import utcnow
from vms.core.errors import InvalidInput, NotFound
from vms.core.models import Role
from vms.core.pagination import PageParams

T0 = dt.datetime(2025, 5, 1, 8, 0, tzinfo=dt.UTC)
M = dt.timedelta(minutes=1)
SHA = "a" * 64


def _add(session: Session, camera_id: int, start: dt.datetime, **over: object) -> Segment:
    values: dict[str, object] = {
        "session": session,
        "camera_id": camera_id,
        "start": start,
        "end": start + 10 * M,
        "path": f"recordings/{camera_id}/x/{start.timestamp()}.mp4",
        "size_bytes": 100,
        "sha256": SHA,
        "mask_plan_hash": None,
        "codec": "h264",
        "width": 64,
        "height": 48,
        "frames": 10,
    }
    values.update(over)
    return service.add_segment(**values)  # type: ignore[arg-type]


def test_add_segment_round_trips(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    seg = _add(session, camera.id, T0, path="recordings/1/a.mp4")
    got = session.get(Segment, seg.id)
    assert got is not None
    assert (got.start, got.end, got.state) == (T0, T0 + 10 * M, SegmentState.ok)
    assert got.start.tzinfo is not None


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"end": T0}, "end"),
        ({"end": T0 - M}, "end"),
        ({"end": (T0 + M).replace(tzinfo=None)}, "end"),
        ({"path": "../../etc/passwd"}, "path"),
        ({"path": "/abs/file.mp4"}, "path"),
        ({"sha256": "XYZ"}, "sha256"),
        ({"width": 0}, "size_bytes"),
    ],
)
def test_add_segment_refuses_bad_input(
    session: Session, factory: Factory, over: dict[str, object], field: str
) -> None:
    camera = factory.camera()
    with pytest.raises(InvalidInput) as exc:
        _add(session, camera.id, T0, **over)
    with pytest.raises(InvalidInput):
        _add(session, camera.id, T0.replace(tzinfo=None))
    assert exc.value.field == field


def test_add_segment_for_unknown_camera(session: Session) -> None:
    with pytest.raises(NotFound):
        _add(session, 999_999, T0)


def test_gaps_open_close_and_change_reason(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    first = service.open_gap(session=session, camera_id=camera.id, start=T0, reason="camera_down")
    again = service.open_gap(
        session=session, camera_id=camera.id, start=T0 + M, reason="camera_down", detail="timeout"
    )
    assert again.id == first.id
    assert again.start == T0
    assert again.detail == "timeout"
    blocked = service.open_gap(
        session=session, camera_id=camera.id, start=T0 + 5 * M, reason="policy_blocked"
    )
    assert blocked.id != first.id
    assert first.end == T0 + 5 * M  # the cause changed: the first gap ends there
    closed = service.close_gap(session=session, camera_id=camera.id, end=T0 + 9 * M)
    assert closed is not None
    assert closed.id == blocked.id
    assert closed.end == T0 + 9 * M
    assert service.close_gap(session=session, camera_id=camera.id, end=T0 + 10 * M) is None


def test_open_gap_validates(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    with pytest.raises(InvalidInput):
        service.open_gap(session=session, camera_id=camera.id, start=T0, reason="")
    with pytest.raises(NotFound):
        service.open_gap(session=session, camera_id=999_999, start=T0, reason="x")


def test_close_open_gaps_at_startup(session: Session, factory: Factory) -> None:
    a, b = factory.camera(), factory.camera()
    ga = service.open_gap(session=session, camera_id=a.id, start=T0, reason="camera_down")
    gb = service.open_gap(session=session, camera_id=b.id, start=T0 + M, reason="disk_full")
    done = service.close_gap(session=session, camera_id=b.id, end=T0 + 2 * M)
    assert done is not None
    gb2 = service.open_gap(session=session, camera_id=b.id, start=T0 + 3 * M, reason="x")
    n = service.close_open_gaps_at_startup(session=session, at=T0 + 60 * M)
    assert n == 2
    session.expire_all()
    assert session.get(Gap, ga.id).end == T0 + 60 * M  # type: ignore[union-attr]
    assert session.get(Gap, gb.id).end == T0 + 2 * M  # type: ignore[union-attr]
    assert session.get(Gap, gb2.id).end == T0 + 60 * M  # type: ignore[union-attr]


def test_list_recordings_window_paging_and_states(session: Session, factory: Factory) -> None:
    org = factory.org()
    camera = factory.camera(org)
    other_camera = factory.camera(org)
    segs = [_add(session, camera.id, T0 + i * 10 * M) for i in range(6)]  # 08:00 .. 09:00
    _add(session, other_camera.id, T0)
    service.open_gap(session=session, camera_id=camera.id, start=T0 + 60 * M, reason="down")
    operator = factory.user(Role.operator, org)
    page = PageParams(limit=2, offset=0)
    # [08:15, 08:45) overlaps the segments starting 08:10, 08:20, 08:30, 08:40.
    got, gaps = service.list_recordings(
        session=session,
        principal=operator.principal,
        camera_id=camera.id,
        start=T0 + 15 * M,
        end=T0 + 45 * M,
        page=page,
    )
    assert [s.id for s in got] == [segs[1].id, segs[2].id]
    assert gaps == []
    got2, _ = service.list_recordings(
        session=session,
        principal=operator.principal,
        camera_id=camera.id,
        start=T0 + 15 * M,
        end=T0 + 45 * M,
        page=PageParams(limit=50, offset=2),
    )
    assert [s.id for s in got2] == [segs[3].id, segs[4].id]
    total = service.count_recordings(
        session=session,
        principal=operator.principal,
        camera_id=camera.id,
        start=T0 + 15 * M,
        end=T0 + 45 * M,
    )
    assert total == 4
    # Segments being deleted or whose file is gone are not playable.
    session.execute(
        update(Segment).where(Segment.id == segs[1].id).values(state=SegmentState.deleting)
    )
    session.execute(
        update(Segment).where(Segment.id == segs[2].id).values(state=SegmentState.missing)
    )
    got3, gaps3 = service.list_recordings(
        session=session,
        principal=operator.principal,
        camera_id=camera.id,
        start=T0,
        end=T0 + 120 * M,
        page=PageParams(limit=50, offset=0),
    )
    assert [s.id for s in got3] == [segs[0].id, segs[3].id, segs[4].id, segs[5].id]
    assert [g.reason for g in gaps3] == ["down"]


def test_list_recordings_other_org_is_not_found(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    stranger = factory.user(Role.operator)
    with pytest.raises(NotFound):
        service.list_recordings(
            session=session,
            principal=stranger.principal,
            camera_id=camera.id,
            start=T0,
            end=T0 + M,
            page=PageParams(limit=1, offset=0),
        )


def test_list_recordings_refuses_empty_window(session: Session, factory: Factory) -> None:
    camera = factory.camera()
    admin = factory.user(Role.admin)
    with pytest.raises(InvalidInput):
        service.list_recordings(
            session=session,
            principal=admin.principal,
            camera_id=camera.id,
            start=T0,
            end=T0,
            page=PageParams(limit=1, offset=0),
        )


def test_factory_segment_writes_the_file(
    session: Session, factory: Factory, data_dir: Path
) -> None:
    camera = factory.camera()
    seg = factory.segment(camera, start=utcnow() - 20 * M, data_dir=data_dir)
    path = service.segment_path(data_dir, camera.id, seg.start)
    assert path.is_file()
    assert path.relative_to(data_dir).as_posix() == seg.path
