"""Fixtures for pipeline tests that span processes: a committed database of their own, a
running supervisor, and polling helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from retention.models import Gap, Segment
from tests.factories import Factory
from vms.core.config import Settings
from vms.pipeline.slots import CameraStatusView
from vms.pipeline.supervisor import PipelineSupervisor

T = TypeVar("T")

# The facade case on the 640x360 sample footage: everything anonymised except a strip along a
# wall (here: the image's lower band, through a plausible ground calibration).
FACADE_PLAN: dict[str, Any] = {
    "version": 1,
    "method": "pixelate",
    "default": "anonymise",
    "calibration": [
        {"image": [0.1, 0.95], "ground": [0.0, 0.0]},
        {"image": [0.9, 0.95], "ground": [10.0, 0.0]},
        {"image": [0.75, 0.55], "ground": [10.0, 10.0]},
        {"image": [0.25, 0.55], "ground": [0.0, 10.0]},
    ],
    "zones": [
        {
            "type": "facade_strip",
            "action": "keep",
            "facade": [[0.0, 0.0], [10.0, 0.0]],
            "width_m": 2.0,
        }
    ],
}


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@contextmanager
def committed(engine: Engine) -> Iterator[Factory]:
    """A factory whose rows are committed at the end of the block (workers see them)."""
    with Session(engine, expire_on_commit=False) as session:
        yield Factory(session)
        session.commit()


@contextmanager
def running(settings: Settings, **kwargs: Any) -> Iterator[PipelineSupervisor]:
    supervisor = PipelineSupervisor(settings, **kwargs)
    supervisor.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()


def state_is(supervisor: PipelineSupervisor, camera_id: int, *states: str) -> Callable[
    [], CameraStatusView | None
]:  # fmt: skip
    def check() -> CameraStatusView | None:
        view = supervisor.status(camera_id)
        return view if view.state.value in states else None

    return check


def status_where(
    supervisor: PipelineSupervisor, camera_id: int, test: Callable[[CameraStatusView], bool]
) -> Callable[[], CameraStatusView | None]:
    def check() -> CameraStatusView | None:
        view = supervisor.status(camera_id)
        return view if test(view) else None

    return check


def segments_of(engine: Engine, camera_id: int) -> list[Segment]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(Segment).where(Segment.camera_id == camera_id).order_by(Segment.start)
            )
        )


def recording_settled(engine: Engine, camera_id: int, data_dir: Path) -> Callable[[], bool]:
    """True once no segment is open and every finished file of the camera has its row.

    The recorder renames a finished file a moment before its row commits (the crash window
    recovery exists for), so "no .partial left" alone does not mean the index caught up.
    """
    folder = data_dir / "recordings" / str(camera_id)

    def check() -> bool:
        if list(folder.rglob("*.partial")):
            return False
        on_disk = {p.relative_to(data_dir).as_posix() for p in folder.rglob("*.mp4")}
        return on_disk == {s.path for s in segments_of(engine, camera_id)}

    return check


def gaps_of(engine: Engine, camera_id: int) -> list[Gap]:
    with Session(engine) as session:
        return list(
            session.scalars(select(Gap).where(Gap.camera_id == camera_id).order_by(Gap.start))
        )


class LiveServer:
    """The whole app (API + pipeline + sweeper) under uvicorn on 127.0.0.1:<free port>."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from vms.api import create_app

        self.app = create_app(settings, run_background=True)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, 20, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        # create_app made the engine, so it is ours to close.
        self.app.state.engine.dispose()

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    @property
    def pipeline(self) -> PipelineSupervisor:
        sup: PipelineSupervisor = self.app.state.pipeline
        return sup


@pytest.fixture
def live_server(iso_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(iso_settings) as server:
        yield server
