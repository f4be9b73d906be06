"""The export worker: a thread in the server that builds approved packages and deletes expired
ones. Builds run one at a time (each is CPU-heavy only at its re-encoded edges)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from vms.core.config import Settings
from vms.core.crypto import SecretBox
from vms.core.db import session_scope
from vms.core.errors import Conflict
from vms.export import build, service
from vms.export.build import BuildStopped

logger = logging.getLogger(__name__)


class ExportWorker:
    def __init__(
        self, *, sessions: sessionmaker[Session], settings: Settings, interval_s: float = 2.0
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Create the signing key if this is the first start, requeue interrupted builds, and
        start polling."""
        box = SecretBox(self._settings.secret_key_bytes())
        with session_scope(self._sessions) as session:
            service.signing_key(session=session, settings=self._settings, box=box)
        build.cleanup_partial_builds(self._settings)
        requeued = build.requeue_interrupted(session_factory=self._sessions)
        if requeued:
            logger.info("requeued %s export builds interrupted by the last stop", requeued)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="export-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                logger.warning("export worker did not stop within 30 s")
            self._thread = None

    def run_once(self) -> int:
        """Expire old packages, then build every approved request; returns builds done."""
        build.expire_packages(session_factory=self._sessions, settings=self._settings)
        built = 0
        while not self._stop.is_set():
            export_id = build.next_approved(session_factory=self._sessions)
            if export_id is None:
                break
            try:
                build.build_package(
                    session_factory=self._sessions,
                    settings=self._settings,
                    export_id=export_id,
                    should_stop=self._stop.is_set,
                )
            except BuildStopped:
                break
            except Conflict:
                continue  # another worker claimed it first
            built += 1
        return built

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                # A database hiccup must not end the worker: try again next round.
                logger.exception("export worker round failed")
            self._stop.wait(self._interval)
