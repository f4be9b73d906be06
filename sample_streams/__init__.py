"""Sample footage tooling: publish files as RTSP cameras for the demo (`make run`) and the tests.

The RTSP server itself (`rtsp_server.py`) runs under Debian's `/usr/bin/python3`, the only
interpreter with GStreamer's introspection bindings; this module starts and supervises it from
the project's Python.
"""

from __future__ import annotations

import functools
import logging
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import quote

logger = logging.getLogger(__name__)

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
APT_PACKAGES = (
    "ffmpeg python3-gi python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly"
)
APT_HINT = f"apt-get update && apt-get install -y {APT_PACKAGES}"

# What the server script needs: the bindings plus one element from each plugin package it uses.
_GST_CHECK = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("multifilesrc", "h264parse", "rtph264pay", "videotestsrc", "x264enc")
           if Gst.ElementFactory.find(e) is None]
if missing:
    raise SystemExit("missing GStreamer elements: " + ", ".join(missing))
"""


class RtspServerError(RuntimeError):
    """The sample RTSP server could not be started."""


def find_sample_media() -> Path | None:
    """The sample media directory: `$VMS_SAMPLE_MEDIA_DIR`, else `../shared/sample_media`."""
    env = os.environ.get("VMS_SAMPLE_MEDIA_DIR")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "sample_media"
    return candidate if candidate.is_dir() else None


def sample_videos() -> list[Path]:
    """The `.mp4` files under the sample media directory (`video/` or top level), sorted."""
    root = find_sample_media()
    if root is None:
        return []
    return sorted({*root.glob("video/*.mp4"), *root.glob("*.mp4")})


@functools.cache
def gst_problem() -> str | None:
    """Why the RTSP server cannot run here, or None if it can (checked once per process)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found; install with: {APT_HINT}"
    try:
        proc = subprocess.run(
            [SYSTEM_PYTHON, "-c", _GST_CHECK], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "checking GStreamer timed out"
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        reason = lines[-1] if lines else f"exit {proc.returncode}"
        return f"GStreamer RTSP server unusable ({reason}); install with: {APT_HINT}"
    return None


def gst_available() -> bool:
    """True if `/usr/bin/python3` can import GstRtspServer and has the needed elements."""
    return gst_problem() is None


class RtspServerProcess:
    """`rtsp_server.py` as a child process; a context manager.

    `mounts` maps a mount path (`/cam1`) to an Annex-B H.264 file (see `convert`), `synthetic`
    maps a mount path to `WxH[@FPS]` (live videotestsrc + x264, costs CPU). The password goes to
    the child through its environment so it never appears on a command line.
    """

    def __init__(
        self,
        mounts: Mapping[str, str | Path] | None = None,
        *,
        synthetic: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        fps: int | None = None,
        user: str | None = None,
        password: str | None = None,
        auth: str = "digest",
        start_timeout: float = 10.0,
    ) -> None:
        self.mounts = dict(mounts or {})
        self.synthetic = dict(synthetic or {})
        if not self.mounts and not self.synthetic:
            raise ValueError("RtspServerProcess needs at least one mount")
        self.host = host
        self.user = user
        self.password = password
        self.auth = auth
        self.fps = fps
        self.start_timeout = start_timeout
        self._requested_port = port
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait for its `PORT` line; raise RtspServerError on failure."""
        if self.running:
            raise RuntimeError("RTSP server already running")
        port = self._port if self._port is not None else self._requested_port
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._port = self._spawn(port, deadline)
                return self
            except RtspServerError:
                # Re-binding the previous port right after a kill can race the kernel (or a
                # client's reconnect); retry within the start timeout before giving up.
                if port == 0 or time.monotonic() + 0.2 >= deadline:
                    raise
                time.sleep(0.1)

    def _command(self, port: int) -> list[str]:
        cmd = [SYSTEM_PYTHON, "-u", str(SERVER_SCRIPT), "--host", self.host, "--port", str(port)]
        for path, location in self.mounts.items():
            cmd += ["--mount", f"{path}={location}"]
        for path, spec in self.synthetic.items():
            cmd += ["--synthetic", f"{path}={spec}"]
        if self.fps is not None:
            cmd += ["--fps", str(self.fps)]
        if self.user is not None:
            cmd += ["--user", self.user, "--auth", self.auth]
        return cmd

    def _spawn(self, port: int, deadline: float) -> int:
        env = dict(os.environ)
        if self.user is not None:
            env["RTSP_PASSWORD"] = self.password or ""
        # GStreamer warnings go to a file: a pipe nobody drains would block the server.
        # Not a `with`: the file lives as long as the server and is closed in _cleanup().
        log = tempfile.TemporaryFile(prefix="rtsp-server-")  # noqa: SIM115
        proc = subprocess.Popen(
            self._command(port), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            bound = _read_port_line(proc, proc.stdout, deadline)
        except RtspServerError as exc:
            _terminate(proc, timeout=2.0)
            log.seek(0)
            tail = log.read().decode(errors="replace").strip()[-2000:]
            log.close()
            raise RtspServerError(f"{exc}; server stderr: {tail or '(empty)'}") from None
        self._proc, self._log = proc, log
        logger.debug("RTSP server pid %s listening on %s:%s", proc.pid, self.host, bound)
        return bound

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL."""
        if self._proc is not None:
            _terminate(self._proc, timeout=timeout)
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL now, like a crashed camera: clients see the TCP connection drop."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        self._cleanup()

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port."""
        self.stop()
        return self.start()

    def _cleanup(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
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

    # -- addressing --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("RTSP server not started")
        return self._port

    def url(self, mount: str, *, credentials: bool = False, password: str | None = None) -> str:
        """`rtsp://host:port/mount`; with `credentials`, user and (given or real) password."""
        mount = mount if mount.startswith("/") else f"/{mount}"
        auth = ""
        if credentials:
            if self.user is None:
                raise ValueError("this server has no credentials")
            secret = self.password if password is None else password
            auth = f"{quote(self.user, safe='')}:{quote(secret or '', safe='')}@"
        return f"rtsp://{auth}{self.host}:{self.port}{mount}"


def start_demo_server(
    cache_dir: str | Path,
    *,
    size: tuple[int, int] = (1280, 720),
    seconds: float | None = 20.0,
    fps: int = 25,
    port: int = 0,
) -> RtspServerProcess:
    """Convert every sample video (cached in `cache_dir`) and serve them as /cam1, /cam2, ..."""
    # Imported here, not at the top: `python -m sample_streams.convert` would otherwise find the
    # module already imported by this package and runpy warns about it.
    from sample_streams.convert import convert_cached

    videos = sample_videos()
    if not videos:
        raise FileNotFoundError("no sample videos; set VMS_SAMPLE_MEDIA_DIR")
    mounts = {
        f"/cam{n}": convert_cached(video, cache_dir, size=size, fps=fps, seconds=seconds)
        for n, video in enumerate(videos, start=1)
    }
    return RtspServerProcess(mounts, port=port, fps=fps).start()


def _read_port_line(proc: subprocess.Popen[bytes], stdout: IO[bytes], deadline: float) -> int:
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RtspServerError("RTSP server did not report its port in time")
            if not sel.select(timeout=remaining):
                continue
            # os.read, not stdout.read: the buffered reader would block for a full buffer.
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                raise RtspServerError(f"RTSP server exited with code {proc.wait()}")
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if line.startswith("PORT "):
                    return int(line.split()[1])


def _terminate(proc: subprocess.Popen[bytes], *, timeout: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
