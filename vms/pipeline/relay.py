"""The RTSP relay for sharing agreements (issue 14): the relay process, its grants, and the
re-check that ends every recipient session within seconds of losing its right.

`RelayService` runs beside the pipeline in the server (a background service):

- it starts `relay_server.py` under Debian's Python (GStreamer's RTSP server), with the ingest
  socket in a private 0700 directory outside the data dir; camera workers connect there and
  send masked H.264 only while a recipient watches (see `relay_feed`). The relay holds streams
  in memory only: a live-only camera still has no write path;
- `grant` gives a session digest credentials valid for its own mount `/share/<key>` only
  (sent to the relay over its stdin, never on a command line, never stored: the database keeps
  the session, not the password);
- every `recheck_s` it asks `sharing.service.session_still_allowed` for each open session
  (token, user, role, agreement in force, camera covered, the owner's live-view policy, the
  session's expiry) and ends those that fail, and sessions nobody has played for
  `idle_timeout_s`: the relay removes the mount and closes the connections at once, so a
  revoked or expired agreement ends the stream within `recheck_s` plus a few milliseconds;
- it counts the time each session actually plays (the relay reports playing/stopped), which
  the session's end entry and the DPO's report carry.

A relay process that dies is restarted on the same port and given the open grants again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session, sessionmaker

from sharing import service as sharing_service
from vms.core.auth import Principal
from vms.core.config import Settings
from vms.core.db import session_scope, utcnow

logger = logging.getLogger(__name__)

SYSTEM_PYTHON = "/usr/bin/python3"
RELAY_SCRIPT = Path(__file__).with_name("relay_server.py")
START_TIMEOUT_S = 10.0
GRANT_TIMEOUT_S = 3.0
MISSING_GRACE_S = 15.0


class RelayError(RuntimeError):
    """The relay cannot serve right now."""


@dataclass(frozen=True, slots=True)
class Usage:
    """How a session was used, as the relay saw it."""

    viewed_seconds: float
    plays: int
    first_play_at: dt.datetime | None


@dataclass
class Grant:
    key: str
    session_id: int
    camera_id: int
    principal: Principal
    username: str
    password: str = field(repr=False)
    issued_mono: float
    playing_since: float | None = None
    viewed_s: float = 0.0
    plays: int = 0
    first_play_at: dt.datetime | None = None
    last_activity: float = 0.0

    def usage(self, now: float) -> Usage:
        viewed = self.viewed_s + (now - self.playing_since if self.playing_since else 0.0)
        return Usage(round(viewed, 3), self.plays, self.first_play_at)


class RelayService:
    """start()/stop() from the app's lifespan; grant/withdraw from the routes (no database
    work inside: the caller's session records the session, so no second writer waits on it)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        clock: Any = time.monotonic,
    ) -> None:
        self.settings = settings
        self.config = settings.sharing
        self._sessions = sessions
        self._clock = clock
        # Outside the data dir, private to this user: only our workers can connect.
        self._dir = tempfile.mkdtemp(prefix="vms-relay-")
        os.chmod(self._dir, 0o700)
        self.ingest_path = os.path.join(self._dir, "ingest.sock")
        self.port: int | None = None
        self.error: str | None = None
        self.restarts = 0
        self.sessions_ended = 0
        self._proc: subprocess.Popen[str] | None = None
        self._write_lock = threading.Lock()
        self._lock = threading.RLock()
        self._grants: dict[str, Grant] = {}
        self._acks: dict[str, threading.Event] = {}
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._readers: list[threading.Thread] = []

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._monitor is not None:
            return
        try:
            with session_scope(self._sessions) as session:
                sharing_service.close_sessions_left_open(session=session, at=utcnow())
        except Exception:
            logger.exception("relay: cannot close the sessions of the previous run")
        try:
            self._spawn(self.config.rtsp_port)
        except (RelayError, OSError) as exc:
            # Sharing is one feature among many: the server runs on, and the stream-session
            # route answers 409 with this reason.
            self.error = f"the RTSP relay could not start: {exc}"
            logger.error("%s", self.error)
        self._stop.clear()
        self._monitor = threading.Thread(target=self._loop, name="relay-monitor", daemon=True)
        self._monitor.start()
        if self.error is None:
            logger.info("RTSP relay listening on %s:%s", self.config.rtsp_host, self.port)

    def stop(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=10)
            self._monitor = None
        with self._lock:
            keys = list(self._grants)
        for key in keys:
            self._end(key, "server_stopped")
        self._terminate()
        shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None and self.port is not None

    def _spawn(self, port: int) -> None:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise RelayError(f"{SYSTEM_PYTHON} not found (install the GStreamer RTSP server)")
        cmd = [SYSTEM_PYTHON, "-u", str(RELAY_SCRIPT), "--host", self.config.rtsp_host,
               "--port", str(port), "--ingest", self.ingest_path]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            bound = _read_port(proc, proc.stdout, time.monotonic() + START_TIMEOUT_S)
        except RelayError:
            _kill(proc)
            tail = proc.stderr.read()[-500:].strip() if proc.stderr else ""
            raise RelayError(f"no port reported ({tail or 'no output'})") from None
        self._proc, self.port, self.error = proc, bound, None
        self._readers = [
            threading.Thread(target=self._read_events, args=(proc,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(proc,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            _kill(proc)
            # The readers see end-of-file once the process is gone; then the pipes are ours.
            for reader in self._readers:
                reader.join(timeout=2)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()

    # -- grants ------------------------------------------------------------------------------

    def url(self, key: str) -> str:
        host = self.config.rtsp_public_host or self.config.rtsp_host
        return f"rtsp://{host}:{self.port}/share/{key}"

    def grant(self, *, key: str, session_id: int, camera_id: int, principal: Principal) -> str:
        """Mount the session's stream with fresh digest credentials; returns the password."""
        if not self.running:
            raise RelayError(self.error or "the RTSP relay is not running")
        grant = Grant(
            key=key,
            session_id=session_id,
            camera_id=camera_id,
            principal=principal,
            username=key,
            password=secrets.token_urlsafe(24),
            issued_mono=self._clock(),
            last_activity=self._clock(),
        )
        ack = threading.Event()
        with self._lock:
            self._grants[key] = grant
            self._acks[key] = ack
        self._send_grant(grant)
        if not ack.wait(GRANT_TIMEOUT_S):
            with self._lock:
                self._grants.pop(key, None)
                self._acks.pop(key, None)
            self._send({"op": "revoke", "session": key})
            raise RelayError("the RTSP relay did not confirm the session")
        return grant.password

    def withdraw(self, key: str) -> Usage | None:
        """Close the session's stream now (mount, credentials, connections); its usage, or
        None if the relay did not know it."""
        with self._lock:
            grant = self._grants.pop(key, None)
            self._acks.pop(key, None)
        if grant is None:
            return None
        self._send({"op": "revoke", "session": key})
        return grant.usage(self._clock())

    def open_grants(self) -> list[str]:
        with self._lock:
            return list(self._grants)

    def _send_grant(self, grant: Grant) -> None:
        self._send({"op": "grant", "session": grant.key, "camera": grant.camera_id,
                    "username": grant.username, "password": grant.password})  # fmt: skip

    def _send(self, command: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            with self._write_lock:
                proc.stdin.write(json.dumps(command) + "\n")
                proc.stdin.flush()
        except (OSError, ValueError):
            logger.warning("relay: cannot send %s", command.get("op"))

    # -- events from the relay ----------------------------------------------------------------

    def _read_events(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        kind, key = event.get("event"), event.get("session")
        now = self._clock()
        with self._lock:
            grant = self._grants.get(key) if isinstance(key, str) else None
            if kind == "granted" and isinstance(key, str) and key in self._acks:
                self._acks[key].set()
            if grant is None:
                return
            if kind == "playing" and grant.playing_since is None:
                grant.playing_since = now
                grant.plays += 1
                grant.first_play_at = grant.first_play_at or utcnow()
                grant.last_activity = now
            elif kind == "stopped" and grant.playing_since is not None:
                grant.viewed_s += now - grant.playing_since
                grant.playing_since = None
                grant.last_activity = now

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip():
                logger.warning("relay: %s", line.strip()[:500])

    # -- the re-check ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self.config.recheck_s):
            try:
                self.check()
            except Exception:
                logger.exception("relay: session re-check failed")

    def check(self) -> None:
        """One round: restart a dead relay, then end every session that lost its right."""
        if self._proc is not None and self._proc.poll() is not None:
            self._restart()
        with self._lock:
            grants = list(self._grants.values())
        if not grants:
            return
        now = self._clock()
        due: list[tuple[str, str]] = []
        with session_scope(self._sessions) as session:
            for grant in grants:
                why = sharing_service.session_still_allowed(
                    session=session, session_id=grant.session_id, principal=grant.principal
                )
                if why == "missing" and now - grant.issued_mono < MISSING_GRACE_S:
                    continue  # the request that opened it has not committed yet
                idle = now - grant.last_activity > self.config.idle_timeout_s
                if why is None and grant.playing_since is None and idle:
                    why = "idle"
                if why is not None:
                    due.append((grant.key, why))
        for key, why in due:
            self._end(key, why)

    def _end(self, key: str, why: str) -> None:
        with self._lock:
            grant = self._grants.get(key)
        if grant is None:
            return
        usage = self.withdraw(key)
        if usage is None:
            return
        logger.info("relay: session %s ended (%s)", grant.session_id, why)
        try:
            with session_scope(self._sessions) as session:
                sharing_service.end_session(
                    session=session,
                    session_id=grant.session_id,
                    ended_by=why,
                    viewed_seconds=usage.viewed_seconds,
                    plays=usage.plays,
                    first_play_at=usage.first_play_at,
                )
            self.sessions_ended += 1
        except Exception:
            logger.exception("relay: cannot record the end of session %s", grant.session_id)

    def _restart(self) -> None:
        code = self._proc.returncode if self._proc is not None else None
        logger.error("relay: the RTSP relay exited (code %s); restarting it", code)
        self._terminate()
        port = self.port or self.config.rtsp_port
        self.port = None
        try:
            self._spawn(port)
        except (RelayError, OSError) as exc:
            self.error = f"the RTSP relay could not restart: {exc}"
            logger.error("%s", self.error)
            with self._lock:
                keys = list(self._grants)
            for key in keys:
                self._end(key, "relay_failed")
            return
        self.restarts += 1
        with self._lock:
            grants = list(self._grants.values())
        for grant in grants:
            grant.playing_since = None
            self._send_grant(grant)


def _read_port(proc: subprocess.Popen[str], stdout: IO[str], deadline: float) -> int:
    with selectors.DefaultSelector() as sel:
        sel.register(stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RelayError("timed out")
            if not sel.select(timeout=remaining):
                continue
            line = stdout.readline()
            if not line:
                raise RelayError(f"exited with code {proc.wait()}")
            if line.startswith("PORT "):
                return int(line.split()[1])


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
