#!/usr/bin/python3
"""vms's RTSP relay: re-serves cameras' masked H.264 to recipients of a sharing agreement.

Run with Debian's interpreter (`gi` with GstRtspServer imports only there), so this script
imports nothing from the project; `vms.pipeline.relay` starts and supervises it:

    /usr/bin/python3 vms/pipeline/relay_server.py --host 127.0.0.1 --port 0 --ingest SOCK

It never decodes, encodes or stores video. What comes in is what the camera workers send over
the ingest socket (a Unix socket in a private 0700 directory): H.264 access units of frames the
worker has already masked. Nothing is written to disk; every stream lives in memory only.

- Ingest (`--ingest`, Unix stream socket). A worker connects, sends `HELLO` (b"VMSR", version,
  camera id) and then frames (`<BIQ`: kind, length, pts in microseconds; kind bit 0 = keyframe,
  payload = one Annex-B access unit with SPS/PPS before every keyframe). The relay answers with
  single bytes: b"W" (someone watches: send frames), b"I" (nobody watches: send nothing), b"K"
  (a new viewer: make the next frame a keyframe).
- Commands (stdin, one JSON object per line; credentials never appear on a command line):
  `{"op": "grant", "session": ID, "camera": N, "username": U, "password": P}` mounts
  `/share/ID` for the camera with digest credentials U/P valid for that mount only;
  `{"op": "revoke", "session": ID}` removes the mount and the credentials and closes every
  connection of that session at once.
- Events (stdout, one line each): `PORT <n>` once listening, then JSON objects:
  `{"event": "granted"|"revoked"|"playing"|"stopped", "session": ID, ...}` and
  `{"event": "ingest", "camera": N, "connected": bool}`.

Each session has its own media (one RTP payloader fed by an appsrc); the camera's frames are
fanned out to every session of that camera, each starting at a keyframe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

MAGIC = b"VMSR"
VERSION = 1
HELLO = struct.Struct("<4sHI")  # magic, version, camera id
FRAME = struct.Struct("<BIQ")  # kind, payload length, pts (microseconds)
KIND_AU = 0x10
FLAG_KEY = 0x01
MAX_AU = 16 * 1024 * 1024
MAX_GOP = 300  # access units kept for new viewers (a GOP longer than this is not cached)
WANT, IDLE, KEYFRAME = b"W", b"I", b"K"
MOUNT_PREFIX = "/share/"

# An appsrc per session: live, stamped with the pipeline's running time on arrival, at most
# ~2 s of frames queued (old ones are dropped first), so a slow recipient never holds up the
# camera or the other recipients.
_LAUNCH = (
    "( appsrc name=src is-live=true format=time min-latency=0 "
    "max-buffers=50 leaky-type=downstream "
    "caps=video/x-h264,stream-format=byte-stream,alignment=au "
    "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)

_out_lock = threading.Lock()


def emit(**event: Any) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
        sys.stdout.flush()


def log(msg: str) -> None:
    print(f"relay: {msg}", file=sys.stderr, flush=True)


@dataclass
class Sink:
    """One session's appsrc; frames flow once a keyframe has come."""

    session: str
    appsrc: Any
    started: bool = False
    last_pts: int = -1


@dataclass
class Camera:
    """A camera's ingest connection and the sinks its frames go to."""

    camera_id: int
    conn: socket.socket | None = None
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    sinks: list[Sink] = field(default_factory=list)
    # The access units since the last keyframe, in memory: a new viewer starts with them at
    # once (a camera that cannot make a keyframe on demand, passthrough, would otherwise keep
    # it waiting up to a GOP, and the RTSP server answers one DESCRIBE at a time).
    gop: list[bytes] = field(default_factory=list)

    def tell(self, byte: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        try:
            with self.send_lock:
                conn.sendall(byte)
        except OSError:
            pass


@dataclass
class Session:
    session: str
    camera_id: int
    username: str
    factory: Any
    clients: set[Any] = field(default_factory=set)
    playing: set[Any] = field(default_factory=set)


class Relay:
    def __init__(self, server: Any, auth: Any) -> None:
        self.server = server
        self.auth = auth
        self.mounts = server.get_mount_points()
        self.lock = threading.Lock()  # cameras and their sinks (ingest threads vs main loop)
        self.cameras: dict[int, Camera] = {}
        self.sessions: dict[str, Session] = {}  # main loop only
        server.connect("client-connected", self._client_connected)

    def camera(self, camera_id: int) -> Camera:
        with self.lock:
            cam = self.cameras.get(camera_id)
            if cam is None:
                cam = self.cameras[camera_id] = Camera(camera_id)
            return cam

    # -- commands (main loop) --------------------------------------------------------------

    def command(self, cmd: dict[str, Any]) -> None:
        op = cmd.get("op")
        if op == "grant":
            self.grant(str(cmd["session"]), int(cmd["camera"]), cmd["username"], cmd["password"])
        elif op == "revoke":
            self.revoke(str(cmd["session"]))
        else:
            log(f"unknown command {op!r}")

    def grant(self, session_id: str, camera_id: int, username: str, password: str) -> None:
        if session_id in self.sessions or not session_id.isalnum():
            log(f"refusing grant for session {session_id!r}")
            return
        role = f"s-{session_id}"
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(_LAUNCH)
        # Several connections of one session (a control room's wall and its recorder) share it.
        factory.set_shared(True)
        factory.add_role_from_structure(
            Gst.Structure.new_from_string(
                f"{role}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
        factory.connect("media-configure", self._media_configure, session_id, camera_id)
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
        self.auth.add_digest(username, password, token)
        self.mounts.add_factory(MOUNT_PREFIX + session_id, factory)
        self.sessions[session_id] = Session(session_id, camera_id, username, factory)
        emit(event="granted", session=session_id, camera=camera_id)

    def revoke(self, session_id: str) -> None:
        sess = self.sessions.pop(session_id, None)
        if sess is None:
            emit(event="revoked", session=session_id, clients=0)
            return
        # No new connection from here on; then every open one is closed.
        self.mounts.remove_factory(MOUNT_PREFIX + session_id)
        self.auth.remove_digest(sess.username)
        clients = list(sess.clients)
        for client in clients:
            client.close()
        self._drop_sinks(session_id)
        if sess.playing:
            sess.playing.clear()
            emit(event="stopped", session=session_id)
        emit(event="revoked", session=session_id, clients=len(clients))

    # -- media and clients (main loop) ------------------------------------------------------

    def _media_configure(self, _factory: Any, media: Any, session_id: str, camera_id: int) -> None:
        appsrc = media.get_element().get_by_name("src")
        sink = Sink(session_id, appsrc)
        cam = self.camera(camera_id)
        with self.lock:
            # Under the lock that _fan_out updates the GOP under: no unit missed or sent twice.
            for payload in cam.gop:
                _push(sink, payload)
            sink.started = bool(cam.gop)
            cam.sinks.append(sink)
            first = len(cam.sinks) == 1
        media.connect("unprepared", self._media_unprepared, camera_id, sink)
        if first:
            cam.tell(WANT)
        cam.tell(KEYFRAME)

    def _media_unprepared(self, _media: Any, camera_id: int, sink: Sink) -> None:
        cam = self.camera(camera_id)
        with self.lock:
            if sink in cam.sinks:
                cam.sinks.remove(sink)
            idle = not cam.sinks
            if idle:
                cam.gop = []  # the next viewer must not start with stale pictures
        if idle:
            cam.tell(IDLE)

    def _drop_sinks(self, session_id: str) -> None:
        with self.lock:
            cams = list(self.cameras.values())
        for cam in cams:
            with self.lock:
                before = len(cam.sinks)
                cam.sinks = [s for s in cam.sinks if s.session != session_id]
                idle = before and not cam.sinks
                if idle:
                    cam.gop = []
            if idle:
                cam.tell(IDLE)

    def _client_connected(self, _server: Any, client: Any) -> None:
        client.connect("play-request", self._play)
        client.connect("teardown-request", self._teardown)
        client.connect("closed", self._closed)

    def _session_of(self, ctx: Any) -> Session | None:
        try:
            path = ctx.uri.abspath
        except AttributeError:
            return None
        if not path.startswith(MOUNT_PREFIX):
            return None
        return self.sessions.get(path[len(MOUNT_PREFIX) :].split("/", 1)[0])

    def _play(self, client: Any, ctx: Any) -> None:
        sess = self._session_of(ctx)
        if sess is None:
            return
        sess.clients.add(client)
        if not sess.playing:
            emit(event="playing", session=sess.session, camera=sess.camera_id)
        sess.playing.add(client)

    def _teardown(self, client: Any, ctx: Any) -> None:
        sess = self._session_of(ctx)
        if sess is not None:
            self._gone(sess, client)

    def _closed(self, client: Any) -> None:
        for sess in list(self.sessions.values()):
            if client in sess.clients:
                self._gone(sess, client)

    def _gone(self, sess: Session, client: Any) -> None:
        sess.clients.discard(client)
        if client in sess.playing:
            sess.playing.discard(client)
            if not sess.playing:
                emit(event="stopped", session=sess.session)

    # -- ingest (threads) -------------------------------------------------------------------

    def serve_ingest(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._ingest, args=(conn,), daemon=True).start()

    def _ingest(self, conn: socket.socket) -> None:
        try:
            magic, version, camera_id = HELLO.unpack(_read(conn, HELLO.size))
        except (OSError, EOFError, struct.error):
            conn.close()
            return
        if magic != MAGIC or version != VERSION:
            log("ingest: bad hello; closing")
            conn.close()
            return
        cam = self.camera(camera_id)
        with self.lock:
            old, cam.conn = cam.conn, conn
            cam.gop = []
            wanted = bool(cam.sinks)
            for sink in cam.sinks:
                sink.started = False  # a new encoder: wait for its first keyframe
        if old is not None:
            _close(old)
        emit(event="ingest", camera=camera_id, connected=True)
        cam.tell(WANT if wanted else IDLE)
        if wanted:
            cam.tell(KEYFRAME)
        try:
            while True:
                kind, length, _pts = FRAME.unpack(_read(conn, FRAME.size))
                if length > MAX_AU or kind & 0xF0 != KIND_AU:
                    log(f"ingest: camera {camera_id} sent a bad frame header; closing")
                    break
                payload = _read(conn, length)
                self._fan_out(cam, payload, bool(kind & FLAG_KEY))
        except (OSError, EOFError, struct.error):
            pass
        finally:
            with self.lock:
                mine = cam.conn is conn
                if mine:
                    cam.conn = None
            _close(conn)
            if mine:
                emit(event="ingest", camera=camera_id, connected=False)

    def _fan_out(self, cam: Camera, payload: bytes, key: bool) -> None:
        with self.lock:
            if not cam.sinks:
                cam.gop = []  # units still in flight after IDLE: keep nothing stale
            elif key:
                cam.gop = [payload]
            elif cam.gop and len(cam.gop) < MAX_GOP:
                cam.gop.append(payload)
            else:
                cam.gop = []
            sinks = list(cam.sinks)
        for sink in sinks:
            if not sink.started:
                if not key:
                    continue
                sink.started = True
            _push(sink, payload)


def _push(sink: Sink, payload: bytes) -> None:
    buf = Gst.Buffer.new_wrapped(payload)
    # Stamped on arrival with the running time; before PLAY there is none yet (the first
    # keyframe that answers DESCRIBE), and an unstamped first buffer makes clients probe for a
    # second before they show anything.
    now = sink.appsrc.get_current_running_time()
    pts = 0 if now == Gst.CLOCK_TIME_NONE else int(now)
    pts = max(pts, sink.last_pts + 1)
    sink.last_pts = pts
    buf.pts = buf.dts = pts
    sink.appsrc.emit("push-buffer", buf)


def _read(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def _read_commands(relay: Relay, loop: Any) -> None:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError:
            log("ignoring a command that is not JSON")
            continue
        GLib.idle_add(_run_command, relay, cmd)
    # The supervising process is gone: so is the reason to serve anything.
    GLib.idle_add(loop.quit)


def _run_command(relay: Relay, cmd: dict[str, Any]) -> bool:
    try:
        relay.command(cmd)
    except Exception as exc:  # one bad command must not stop the relay
        log(f"command {cmd.get('op')!r} failed: {type(exc).__name__}: {exc}")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ingest", required=True, help="Unix socket path for camera workers")
    args = parser.parse_args(argv)

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    auth = GstRtspServer.RTSPAuth()
    # Digest only: the password never crosses the network; no anonymous access at all.
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    server.set_auth(auth)
    relay = Relay(server, auth)

    if os.path.exists(args.ingest):
        os.unlink(args.ingest)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.ingest)
    os.chmod(args.ingest, 0o600)
    listener.listen(64)
    threading.Thread(target=relay.serve_ingest, args=(listener,), daemon=True).start()

    if server.attach(None) == 0:
        log(f"cannot bind {args.host}:{args.port}")
        return 1

    def _stop(*_: object) -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, _stop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, _stop)
    threading.Thread(target=_read_commands, args=(relay, loop), daemon=True).start()
    print(f"PORT {server.get_bound_port()}", flush=True)
    loop.run()
    listener.close()
    if os.path.exists(args.ingest):
        os.unlink(args.ingest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
