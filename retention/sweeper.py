"""The sweep as a background service of the server: every `sweep_interval_s`, in a thread."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from retention.sweep import SweepReport, sweep
from vms.core.config import RetentionSettings
from vms.core.db import utcnow

logger = logging.getLogger(__name__)

# The first run waits a little so start-up is not slowed down, then finishes whatever a killed
# predecessor left half-deleted.
FIRST_RUN_DELAY_S = 5.0


class RetentionSweeper:
    """Runs `retention.sweep` periodically with its own session; start()/stop() for the app."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        data_dir: Path,
        settings: RetentionSettings,
        clock: Callable[[], dt.datetime] = utcnow,
        first_run_delay_s: float = FIRST_RUN_DELAY_S,
    ) -> None:
        self._sessions = sessions
        self._data_dir = data_dir
        self._settings = settings
        self._clock = clock
        self._first_delay = min(first_run_delay_s, settings.sweep_interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_report: SweepReport | None = None
        self.runs = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="retention-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("retention sweeper did not stop within %.0fs", timeout)
            self._thread = None

    def run_once(self) -> SweepReport:
        session = self._sessions()
        try:
            report = sweep(
                session=session,
                data_dir=self._data_dir,
                now=self._clock(),
                batch_size=self._settings.batch_size,
                disk_free_floor_bytes=self._settings.disk_free_floor_bytes,
                should_continue=lambda: not self._stop.is_set(),
            )
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        self.last_report = report
        self.runs += 1
        return report

    def _loop(self) -> None:
        wait = self._first_delay
        while not self._stop.wait(wait):
            try:
                self.run_once()
            except Exception:
                # A failed sweep must not end the loop: the next one retries (and finishes what
                # this one left marked "deleting").
                logger.exception("retention sweep failed")
            wait = self._settings.sweep_interval_s
