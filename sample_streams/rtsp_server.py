#!/usr/bin/python3
"""Publish Annex-B H.264 files (or a synthetic pattern) as live RTSP cameras.

Run with Debian's interpreter: `gi` (PyGObject + GstRtspServer) is only importable there, so this
script must not import anything from the project.

    /usr/bin/python3 sample_streams/rtsp_server.py --mount /cam1=clip.h264 --port 0
    RTSP_PASSWORD=pw /usr/bin/python3 sample_streams/rtsp_server.py --synthetic /t=640x360 --user u

Once the server is attached it prints `PORT <n>` on stdout (flushed); callers read that line so
that `--port 0` lets parallel test runs each get their own port.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

DEFAULT_FPS = Fraction(25)
_ROLE = "user"


@dataclass(frozen=True)
class FileMount:
    path: str
    location: str
    fps: Fraction


@dataclass(frozen=True)
class SyntheticMount:
    path: str
    width: int
    height: int
    fps: Fraction


Mount = FileMount | SyntheticMount


def _parse_fps(text: str) -> Fraction:
    fps = Fraction(text)
    if fps <= 0:
        raise argparse.ArgumentTypeError(f"fps must be positive: {text}")
    return fps


def probe_fps(location: str) -> Fraction | None:
    """Frame rate from the stream's SPS timing info, via ffprobe (None if unknown)."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    try:
        cmd = [ffprobe, "-v", "error", "-select_streams", "v:0",
               "-show_entries", "stream=r_frame_rate", "-of", "json", location]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
        rate = json.loads(out)["streams"][0]["r_frame_rate"]
        fps = Fraction(rate)
    except (subprocess.SubprocessError, KeyError, IndexError, ValueError, ZeroDivisionError):
        return None
    # ffprobe reports 1200000/1 and similar nonsense when the SPS carries no timing info.
    return fps if 0 < fps <= 240 else None


def parse_mount(spec: str, default_fps: Fraction | None) -> FileMount:
    """`/path=FILE[@FPS]`."""
    path, sep, rest = spec.partition("=")
    if not sep or not path.startswith("/") or not rest:
        raise argparse.ArgumentTypeError(f"expected /path=FILE[@FPS], got {spec!r}")
    location, fps = rest, None
    m = re.fullmatch(r"(.+)@(\d+(?:/\d+)?)", rest)
    if m:
        location, fps = m.group(1), _parse_fps(m.group(2))
    if not os.path.isfile(location):
        raise argparse.ArgumentTypeError(f"no such file: {location}")
    fps = fps or default_fps or probe_fps(location) or DEFAULT_FPS
    return FileMount(path, os.path.abspath(location), fps)


def parse_synthetic(spec: str) -> SyntheticMount:
    """`/path=WIDTHxHEIGHT[@FPS]`."""
    m = re.fullmatch(r"(/[^=]*)=(\d+)x(\d+)(?:@(\d+(?:/\d+)?))?", spec)
    if not m:
        raise argparse.ArgumentTypeError(f"expected /path=WxH[@FPS], got {spec!r}")
    fps = _parse_fps(m.group(4)) if m.group(4) else DEFAULT_FPS
    return SyntheticMount(m.group(1), int(m.group(2)), int(m.group(3)), fps)


def _launch_line(mount: Mount) -> str:
    fps = f"{mount.fps.numerator}/{mount.fps.denominator}"
    if isinstance(mount, SyntheticMount):
        # is-live makes videotestsrc produce at the frame rate instead of as fast as it can.
        return (
            f"( videotestsrc is-live=true pattern=smpte "
            f"! video/x-raw,width={mount.width},height={mount.height},framerate={fps} "
            f"! x264enc tune=zerolatency speed-preset=ultrafast bframes=0 "
            f"key-int-max={max(1, round(mount.fps))} "
            f"! video/x-h264,profile=baseline ! h264parse name=parse config-interval=-1 "
            f"! rtph264pay name=pay0 pt=96 )"
        )
    # multifilesrc treats the location as a printf pattern (for numbered files): escape '%'.
    location = mount.location.replace("%", "%%").replace('"', '\\"')
    return (
        f'( multifilesrc location="{location}" loop=true '
        f"caps=video/x-h264,stream-format=byte-stream,framerate={fps} "
        f"! h264parse name=parse config-interval=-1 ! video/x-h264,alignment=au "
        f"! rtph264pay name=pay0 pt=96 )"
    )


class LoopingFactory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]
    """Media factory whose parser output gets monotonic timestamps across file loops."""

    def __init__(self, mount: Mount) -> None:
        super().__init__()
        self.mount = mount
        self.set_launch(_launch_line(mount))
        # One pipeline per mount shared by every client, like a camera's single encoder.
        self.set_shared(True)
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(
        self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia
    ) -> None:
        if not isinstance(self.mount, FileMount):
            return
        parse = media.get_element().get_by_name("parse")
        frame_ns = Gst.util_uint64_scale(
            Gst.SECOND, self.mount.fps.denominator, self.mount.fps.numerator
        )
        # A fresh counter per media: a new pipeline starts at zero like any new stream.
        parse.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, _restamp, ([0], frame_ns))


def _restamp(
    _pad: Gst.Pad, info: Gst.PadProbeInfo, data: tuple[list[int], int]
) -> Gst.PadProbeReturn:
    # multifilesrc restarts at zero on every loop; without rewriting, timestamps jump back and
    # the sinks (sync=true) would either burst or stall. No B-frames, so PTS == DTS.
    counter, frame_ns = data
    buf = info.get_buffer()
    if buf is None:
        return Gst.PadProbeReturn.OK
    # PyGObject cannot call gst_buffer_make_writable(); h264parse pushes buffers it no longer
    # holds, so writing the fields in place works (timestamps checked across loops by the tests).
    buf.pts = counter[0] * frame_ns
    buf.dts = buf.pts
    buf.duration = frame_ns
    counter[0] += 1
    return Gst.PadProbeReturn.OK


def _make_auth(user: str, password: str, method: str) -> GstRtspServer.RTSPAuth:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, _ROLE)
    # GstRTSPAuth takes a bit mask of methods, but PyGObject only accepts single enum values,
    # so one method per server: start two servers to test both.
    if method == "basic":
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    else:
        auth.add_digest(user, password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    return auth


def build_server(args: argparse.Namespace, mounts: list[Mount]) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    if args.user is not None:
        server.set_auth(_make_auth(args.user, args.password or "", args.auth))
    points = server.get_mount_points()
    for mount in mounts:
        factory = LoopingFactory(mount)
        if args.user is not None:
            factory.add_role_from_structure(
                Gst.Structure.new_from_string(
                    f"{_ROLE}, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)true"
                )
            )
        points.add_factory(mount.path, factory)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="/PATH=FILE[@FPS]",
        help="serve an Annex-B H.264 file (no B-frames) in a loop",
    )
    parser.add_argument(
        "--synthetic",
        action="append",
        default=[],
        metavar="/PATH=WxH[@FPS]",
        type=parse_synthetic,
        help="serve videotestsrc encoded with x264",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--fps",
        type=_parse_fps,
        default=None,
        help="frame rate for mounts without @FPS (default: probed, else 25)",
    )
    parser.add_argument("--user", default=None, help="require RTSP authentication")
    parser.add_argument("--password", default=None)
    parser.add_argument("--auth", choices=("basic", "digest"), default="digest")
    args = parser.parse_args(argv)
    # Prefer the environment for the password so it does not show up in `ps`.
    if args.user is not None and args.password is None:
        args.password = os.environ.get("RTSP_PASSWORD", "")
    try:
        mounts: list[Mount] = [parse_mount(spec, args.fps) for spec in args.mount]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    mounts += args.synthetic
    if not mounts:
        parser.error("nothing to serve: give --mount and/or --synthetic")

    Gst.init(None)
    loop = GLib.MainLoop()
    server = build_server(args, mounts)
    if server.attach(None) == 0:
        print(f"cannot bind {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1

    def _stop(*_: object) -> bool:
        loop.quit()
        return False  # GLib.SOURCE_REMOVE: one signal is enough

    # Signals through GLib so they are handled inside the main loop, not between C calls.
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, _stop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, _stop)
    print(f"PORT {server.get_bound_port()}", flush=True)
    for mount in mounts:
        print(f"MOUNT {mount.path} {float(mount.fps):g}fps", file=sys.stderr, flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
