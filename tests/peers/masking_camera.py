"""The masking test camera (`sample_streams/masking_camera.py`) as a child process.

It speaks RTSP on 127.0.0.1 (port 0, read from its `PORT` line) and takes commands on stdin; every
command waits for the camera's `ACK`, after which each frame it draws carries the new state.
"""

from __future__ import annotations

import functools
import json
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from sample_streams import SYSTEM_PYTHON

CAMERA_SCRIPT = Path(__file__).resolve().parents[2] / "sample_streams" / "masking_camera.py"
# Beyond what the plain RTSP server needs: the H.264 decoder (gst-libav) and the raw elements.
CAMERA_APT = "gstreamer1.0-libav"
_CAMERA_CHECK = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
need = ("appsrc", "appsink", "avdec_h264", "videoconvert", "videoscale", "x264enc", "h264parse",
        "rtph264pay", "multifilesrc", "videotestsrc")
missing = [e for e in need if Gst.ElementFactory.find(e) is None]
if missing:
    raise SystemExit("missing GStreamer elements: " + ", ".join(missing))
"""


@functools.cache
def camera_problem() -> str | None:
    """Why the masking camera cannot run here (None if it can); checked once per process."""
    try:
        proc = subprocess.run(
            [SYSTEM_PYTHON, "-c", _CAMERA_CHECK], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON}: {exc}"
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        reason = lines[-1] if lines else f"exit {proc.returncode}"
        return f"masking camera unusable ({reason}); run scripts/system-deps (needs {CAMERA_APT})"
    return None


class MaskingCameraError(RuntimeError):
    """The camera did not start, or did not answer a command."""


class MaskingCameraProcess:
    """One masking camera; `set_masks` / `forget` / `stats` talk to it, `url()` plays it."""

    def __init__(
        self,
        source: Path | None,
        *,
        size: tuple[int, int] = (640, 360),
        fps: int = 25,
        keyint: int = 25,
        pattern: str | None = None,
        mount: str = "/cam",
        start_timeout: float = 10.0,
    ) -> None:
        if (source is None) == (pattern is None):
            raise ValueError("give exactly one of source and pattern")
        self.source, self.pattern = source, pattern
        self.size, self.fps, self.keyint, self.mount = size, fps, keyint, mount
        self.start_timeout = start_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._seq = 0
        self._send_lock = threading.Lock()
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        w, h = self.size
        cmd = [SYSTEM_PYTHON, "-u", str(CAMERA_SCRIPT), "--size", f"{w}x{h}", "--fps",
               str(self.fps), "--keyint", str(self.keyint), "--mount", self.mount]  # fmt: skip
        cmd += ["--pattern", self.pattern] if self.pattern else ["--source", str(self.source)]
        # stderr to a file: a pipe nobody drains would block GStreamer's warnings.
        self._log = tempfile.TemporaryFile(prefix="masking-camera-")  # noqa: SIM115
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            bufsize=1,
        )  # fmt: skip
        threading.Thread(target=self._read, name="masking-camera-out", daemon=True).start()
        line = self._expect(lambda s: s.startswith("PORT "), self.start_timeout, "its port")
        self.port = int(line.split()[1])
        return self

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _expect(self, match: Any, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(0.01, remaining))
            except queue.Empty:
                line = ""
            if line is None:
                raise MaskingCameraError(f"camera exited before {what}: {self.stderr_tail()}")
            if line and line.startswith("ERROR "):
                raise MaskingCameraError(f"camera refused a command: {line}")
            if line and match(line):
                return line
            if remaining <= 0:
                raise MaskingCameraError(f"camera did not report {what} within {timeout}s")

    def command(self, cmd: str, timeout: float = 5.0, **fields: Any) -> list[str]:
        """Send a command and wait for its ACK; returns the lines before the ACK."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise MaskingCameraError("camera not running")
        with self._send_lock:
            self._seq += 1
            seq = self._seq
            proc.stdin.write(json.dumps({"cmd": cmd, "seq": seq, **fields}) + "\n")
            proc.stdin.flush()
            before: list[str] = []

            def match(line: str) -> bool:
                if line == f"ACK {seq}":
                    return True
                before.append(line)
                return False

            self._expect(match, timeout, f"ACK {seq}")
            return before

    def set_masks(self, masks: Sequence[dict[str, Any]]) -> None:
        """Draw these masks: `{"points": [(x, y), ...] (ONVIF), "color": (Y, Cb, Cr)}`."""
        self.command("masks", masks=list(masks))

    def forget(self) -> None:
        """Stop drawing masks, as after a firmware reset."""
        self.command("forget")

    def stats(self) -> dict[str, float]:
        """Frames drawn and CPU seconds used by the camera so far."""
        for line in self.command("stats"):
            if line.startswith("STATS "):
                stats: dict[str, float] = json.loads(line[6:])
                return stats
        raise MaskingCameraError("no STATS line")

    def url(self) -> str:
        if self.port is None:
            raise MaskingCameraError("camera not started")
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stderr_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-2000:] or "(no stderr)"

    def stop(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # End of stdin is the camera's signal to stop; SIGTERM/SIGKILL if it does not.
            try:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()
