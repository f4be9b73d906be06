"""Process plumbing for camera workers on this machine: the multiprocessing context, the
queues every worker reports through, and the thread that hands worker log records to this
process's logging. The supervisor decides when workers start and stop; this only does it."""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from vms.pipeline.config import WorkerConfig
from vms.pipeline.status import WorkerStatus
from vms.pipeline.worker import run_worker

PRELOAD = [
    "vms.pipeline.worker",
    "vms.pipeline.index",
    "vms.pipeline.passthrough",
    "vms.pipeline.media2",
]


def _context(start_method: str) -> BaseContext:
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # Workers fork from a server that already imported the heavy modules (PyAV, OpenCV,
        # SQLAlchemy, the ONVIF/SOAP stack): a camera starts in milliseconds instead of a second
        # of imports, and the pages those imports fill are shared by every worker.
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


class WorkerProcesses:
    """open() before the first spawn, close() after the last worker is gone."""

    def __init__(self, start_method: str = "forkserver") -> None:
        # Never fork this threaded asyncio process directly: forkserver (or spawn) only.
        self._ctx = _context(start_method)
        self._status_q: Any = None
        self._log_q: Any = None
        self._log_thread: threading.Thread | None = None
        self._logs_done = threading.Event()

    def open(self) -> None:
        self._status_q = self._ctx.Queue()
        self._log_q = self._ctx.Queue()
        self._logs_done.clear()
        self._log_thread = threading.Thread(
            target=self._forward_logs, name="pipeline-worker-logs", daemon=True
        )
        self._log_thread.start()

    def spawn(self, config: WorkerConfig, live_name: str) -> tuple[BaseProcess, Connection, Any]:
        """Start a worker for `config`: (process, control pipe to it, its stop event)."""
        recv_end, send_end = self._ctx.Pipe(duplex=False)
        stop_event = self._ctx.Event()
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=run_worker,
            args=(
                config,
                self._status_q,
                recv_end,
                stop_event,
                live_name,
                logging.getLogger().getEffectiveLevel(),
                self._log_q,
            ),
            name=f"vms-camera-{config.camera_id}",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            send_end.close()
            raise
        finally:
            recv_end.close()
        return process, send_end, stop_event

    def statuses(self) -> Iterator[WorkerStatus]:
        """Every status report queued so far (never blocks)."""
        q = self._status_q
        if q is None:
            return
        while True:
            try:
                status: WorkerStatus = q.get_nowait()
            except queue.Empty:
                return
            except (OSError, ValueError, EOFError):
                return
            yield status

    def close(self) -> None:
        self._logs_done.set()
        if self._log_thread is not None:
            self._log_thread.join(timeout=5)
            self._log_thread = None
        for q in (self._status_q, self._log_q):
            if q is not None:
                q.close()
                q.join_thread()
        self._status_q = self._log_q = None

    def _forward_logs(self) -> None:
        """Hand worker log records to this process's loggers (until close, then drain)."""
        q = self._log_q
        while True:
            try:
                record: logging.LogRecord = q.get(timeout=0.2)
            except queue.Empty:
                if self._logs_done.is_set():
                    return
                continue
            except (OSError, ValueError, EOFError):
                return
            logging.getLogger(record.name).handle(record)
