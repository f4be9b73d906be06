"""What relaying shared cameras costs (issue 14): streams per core, re-encode vs passthrough, and
the latency the relay adds.

    .venv/bin/python bench/relay.py             # writes bench/results/relay.md
    .venv/bin/python bench/relay.py --quick     # shorter windows, for trying things out

The real parts of production: vms's GStreamer RTSP relay (`vms/pipeline/relay_server.py`) fed
through its ingest socket by `vms.pipeline.relay_feed.RelayFeed`, exactly as a camera worker
feeds it, and pulled by PyAV RTSP clients (TCP), one session each.

- re-encode: the feed gets decoded 720p frames of real footage (what a worker has after
  masking) and encodes them with the relay's x264 settings (ultrafast, zerolatency, no
  B-frames, 1 s GOP, 1 thread). Decoding and masking are not counted: a worker does them
  anyway for live view and recording (bench/pipeline.py measures them).
- passthrough: the feed forwards the camera's own H.264 packets (`RelayFeed.forward`), as a
  passthrough camera with verified in-camera masks would: no decode, no encode.

CPU is read from /proc for the feeding processes and the relay process over a steady window;
"streams per core" is 100 % divided by the CPU one relayed stream costs (feed + relay). Every
stream must reach every client at >= 99 % of 25 fps. Latency: a frame counter is drawn into
each frame as a bar code; the client decodes it and compares the frame's arrival with the
moment the feed got the frame (one clock, one machine): encode + socket + relay + RTP/TCP +
the client's demuxer and decoder, i.e. what the relay adds to watching the worker's output.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import selectors
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402

from sample_streams import APT_HINT, gst_problem  # noqa: E402
from sample_streams.convert import convert  # noqa: E402
from vms.pipeline.relay import RELAY_SCRIPT, SYSTEM_PYTHON  # noqa: E402

FPS = 25
SIZE = (1280, 720)
SOURCE = REPO / ".." / "shared" / "sample_media" / "video" / "market_street_1906_awbc_sample.mp4"
RESULTS = REPO / "bench" / "results" / "relay.md"
FULL_RATE = 0.99
OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32768"}
BITS = 16  # bar code: frame counter, one 32x32 block per bit along the top edge
BLOCK = 32


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return (sum(values[:3]) + sum(values[5:8])) / os.sysconf("SC_CLK_TCK")


# -- the relay process ---------------------------------------------------------------------------


class Relay:
    def __init__(self, ingest: str) -> None:
        self.ingest = ingest
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, "-u", str(RELAY_SCRIPT), "--port", "0", "--ingest", ingest],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1,
        )  # fmt: skip
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=10):
                raise SystemExit("the relay did not start")
        self.port = int(self.proc.stdout.readline().split()[1])
        self.granted: set[str] = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if event["event"] == "granted":
                self.granted.add(event["session"])

    def grant(self, session: str, camera: int) -> str:
        assert self.proc.stdin is not None
        cmd = {"op": "grant", "session": session, "camera": camera, "username": session,
               "password": "bench-password"}  # fmt: skip
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + 5
        while session not in self.granted:
            if time.monotonic() > deadline:
                raise SystemExit(f"grant {session} not confirmed")
            time.sleep(0.01)
        return f"rtsp://{session}:bench-password@127.0.0.1:{self.port}/share/{session}"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


# -- a camera worker's relay side ----------------------------------------------------------------


def stamp(frame: av.VideoFrame, n: int) -> av.VideoFrame:
    """A copy of `frame` with `n` drawn as a bar code into the top-left of the luma plane."""
    arr = frame.to_ndarray(format="yuv420p").copy()  # Y rows first, then U and V
    for bit in range(BITS):
        arr[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 235 if n >> bit & 1 else 16
    return av.VideoFrame.from_ndarray(arr, format="yuv420p")


def read_stamp(frame: av.VideoFrame) -> int:
    y = frame.to_ndarray(format="gray")
    n = 0
    for bit in range(BITS):
        block = y[8 : BLOCK - 8, bit * BLOCK + 8 : (bit + 1) * BLOCK - 8]
        n |= (1 if block.mean() > 128 else 0) << bit
    return n


def _feeder(ingest: str, camera_id: int, mode: str, clip: str, seconds: float, conn: Any,
            stamped: bool) -> None:  # fmt: skip
    from vms.pipeline.relay_feed import RelayEncoder, RelayFeed

    os.sched_setaffinity(0, {camera_id % (os.cpu_count() or 1)})
    frames: list[av.VideoFrame] = []
    packets: list[tuple[bytes, bool]] = []
    extradata = None
    with av.open(clip, format="h264") as src:
        stream = src.streams.video[0]
        stream.codec_context.thread_count = 1
        if mode == "reencode" or stamped:
            for i, frame in enumerate(src.decode(stream)):
                frames.append(frame.reformat(format="yuv420p"))
                if i == 2 * FPS - 1:
                    break
        else:
            for packet in src.demux(stream):
                if packet.size:
                    packets.append((bytes(packet), packet.is_keyframe))
            extradata = stream.codec_context.extradata
    if stamped:
        frames = [stamp(f, i) for i, f in enumerate(frames)]
        if mode == "passthrough":
            # Pre-encoded once: passthrough forwards packets, it never encodes.
            enc = RelayEncoder(gop_frames=FPS)
            for i in range(4 * len(frames)):
                for unit in enc.encode(stamp(frames[i % len(frames)], i), i / FPS):
                    packets.append((unit.data, unit.key))
            frames = []
    feed = RelayFeed.connect(ingest, camera_id, gop_frames=FPS)
    sent: dict[int, list[float]] = {}
    t0 = time.monotonic()
    n = 0
    conn.send("ready")
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        if feed.wanted:
            if mode == "reencode":
                frame = frames[n % len(frames)]
                if stamped:
                    frame = stamp(frame, n % (1 << BITS))
                    sent.setdefault(n % (1 << BITS), []).append(time.monotonic())
                feed.feed(frame, now)
            else:
                data, key = packets[n % len(packets)]
                if stamped:
                    sent.setdefault(n % len(packets), []).append(time.monotonic())
                feed.forward(data, key=key, mono=now, extradata=extradata)
        n += 1
        time.sleep(max(0.0, t0 + n / FPS - time.monotonic()))
    feed.close()
    conn.send(sent)


# -- clients --------------------------------------------------------------------------------------


@dataclass
class Client:
    url: str
    arrivals: list[float] = field(default_factory=list)
    stamps: list[tuple[int, float]] = field(default_factory=list)
    error: str | None = None

    def run(self, stop: threading.Event, decode: bool) -> None:
        try:
            with av.open(self.url, options=OPTIONS, timeout=(10, 10)) as c:
                stream = c.streams.video[0]
                for packet in c.demux(stream):
                    if stop.is_set():
                        return
                    if not packet.size:
                        continue
                    self.arrivals.append(time.monotonic())
                    if decode:
                        for frame in packet.decode():
                            self.stamps.append((read_stamp(frame), time.monotonic()))
        except av.error.FFmpegError as exc:
            self.error = str(exc)

    def fps(self, start: float, end: float) -> float:
        inside = [t for t in self.arrivals if start <= t < end]
        return len(inside) / (end - start)


@dataclass
class Run:
    mode: str
    cameras: int
    viewers: int  # per camera
    window: float
    fps: list[float]
    feed_cpu: float  # % of one core, all feeding processes
    relay_cpu: float  # % of one core
    other_cpu: float
    errors: list[str]

    @property
    def per_stream(self) -> float:
        return (self.feed_cpu + self.relay_cpu) / (self.cameras * self.viewers)

    @property
    def passed(self) -> bool:
        return not self.errors and min(self.fps) >= FULL_RATE * FPS


def run(mode: str, cameras: int, viewers: int, clip: Path, window: float) -> Run:
    ctx = multiprocessing.get_context("spawn")
    warmup = 4.0
    with tempfile.TemporaryDirectory() as tmp:
        relay = Relay(os.path.join(tmp, "ingest.sock"))
        procs, conns = [], []
        for cam in range(cameras):
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_feeder, args=(relay.ingest, cam + 1, mode, str(clip),
                                                  warmup + window + 3, send, False))  # fmt: skip
            p.start()
            procs.append(p)
            conns.append(recv)
        for c in conns:
            assert c.recv() == "ready"
        clients = [
            Client(relay.grant(f"c{cam}v{v}", cam + 1))
            for cam in range(cameras)
            for v in range(viewers)
        ]
        stop = threading.Event()
        threads = [threading.Thread(target=c.run, args=(stop, False), daemon=True)
                   for c in clients]  # fmt: skip
        for t in threads:
            t.start()
        time.sleep(warmup)
        pids = [p.pid for p in procs if p.pid is not None]
        t_start = time.monotonic()
        feed0 = sum(cpu_seconds(pid) for pid in pids)
        relay0 = cpu_seconds(relay.proc.pid)
        me0 = cpu_seconds(os.getpid())
        busy0 = machine_busy_seconds()
        time.sleep(window)
        t_end = time.monotonic()
        feed1 = sum(cpu_seconds(pid) for pid in pids)
        relay1 = cpu_seconds(relay.proc.pid)
        me1 = cpu_seconds(os.getpid())
        busy1 = machine_busy_seconds()
        stop.set()
        for c in conns:
            c.recv()
        for p in procs:
            p.join(timeout=10)
        relay.close()
    elapsed = t_end - t_start
    ours = (feed1 - feed0) + (relay1 - relay0) + (me1 - me0)
    return Run(
        mode=mode,
        cameras=cameras,
        viewers=viewers,
        window=round(elapsed, 1),
        fps=[round(c.fps(t_start, t_end), 2) for c in clients],
        feed_cpu=100 * (feed1 - feed0) / elapsed,
        relay_cpu=100 * (relay1 - relay0) / elapsed,
        other_cpu=max(0.0, 100 * ((busy1 - busy0) - ours) / elapsed),
        errors=[c.error for c in clients if c.error],
    )


def latency(mode: str, clip: Path, seconds: float) -> dict[str, float]:
    """Frame handed to the feed -> frame decoded by the client, in ms."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        relay = Relay(os.path.join(tmp, "ingest.sock"))
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_feeder, args=(relay.ingest, 1, mode, str(clip), seconds + 4,
                                              send, True))  # fmt: skip
        p.start()
        assert recv.recv() == "ready"
        client = Client(relay.grant("lat", 1))
        stop = threading.Event()
        thread = threading.Thread(target=client.run, args=(stop, True), daemon=True)
        started = time.monotonic()
        thread.start()
        sent: dict[int, list[float]] = recv.recv()
        stop.set()
        p.join(timeout=10)
        relay.close()
    first = client.arrivals[0] - started if client.arrivals else float("nan")
    # Skip the client's start-up burst (it buffers while probing): steady state only.
    # A counter value repeats when the loop does: take its last sending before the arrival.
    samples = sorted(
        (got - max(t for t in sent[n] if t <= got)) * 1000
        for n, got in client.stamps[2 * FPS :]
        if any(t <= got for t in sent.get(n, ()))
    )
    return {
        "frames": len(samples),
        "median_ms": statistics.median(samples),
        "p95_ms": samples[int(0.95 * (len(samples) - 1))],
        "max_ms": samples[-1],
        "first_frame_s": first,
    }


def versions() -> dict[str, str]:
    gst = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('Gst', '1.0'); "
         "from gi.repository import Gst; Gst.init(None); print(Gst.version_string())"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "pyav": av.__version__,
        "ffmpeg": ".".join(map(str, av.library_versions["libavformat"])) + " (libavformat)",
        "gstreamer": gst,
    }


def write(runs: list[Run], lat: dict[str, dict[str, float]], info: dict[str, str],
          window: float, command: str) -> str:  # fmt: skip
    best: dict[str, Run] = {}
    for r in runs:
        if r.viewers == 1 and r.passed:
            cur = best.get(r.mode)
            if cur is None or r.cameras > cur.cameras:
                best[r.mode] = r
    lines = [
        "# Relay benchmark (issue 14)",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}`.",
        "",
        f"- machine: {info['machine']}",
        f"- PyAV {info['pyav']}, FFmpeg {info['ffmpeg']}, {info['gstreamer']} "
        "(Debian's GstRtspServer, run by /usr/bin/python3)",
        f"- stream: {SOURCE.name} at {SIZE[0]}x{SIZE[1]}, {FPS} fps; relay x264 settings: "
        "ultrafast, zerolatency, no B-frames, keyint 25, repeat-headers, 1 thread",
        "- clients: PyAV over RTSP/TCP (interleaved), one session (own credentials, own mount) "
        f"per viewer; full rate = every client >= {FULL_RATE:.0%} of {FPS} fps over a "
        f"{window:.0f} s window after a 4 s warm-up",
        "- a run short of full rate while other load was above 50 % of a core is repeated once; "
        "both rows are listed",
        "- CPU: /proc of the feeding processes (one per camera, each pinned to a core) and of "
        'the relay process; "other" is the rest of the machine meanwhile (other engineers\' '
        "tests share it)",
        "",
        "## Summary",
        "",
        "| | re-encode | passthrough |",
        "|---|---:|---:|",
    ]
    re_, pt = best.get("reencode"), best.get("passthrough")

    def cell(r: Run | None, f: Any) -> str:
        return f(r) if r is not None else "n/a"

    lines += [
        "| CPU per relayed stream, feed + relay (% of a core) | "
        f"{cell(re_, lambda r: f'{r.per_stream:.1f}')} | "
        f"{cell(pt, lambda r: f'{r.per_stream:.1f}')} |",
        "| **relayed streams per core** (100 % / CPU per stream) | "
        f"**{cell(re_, lambda r: f'{100 / r.per_stream:.0f}')}** | "
        f"**{cell(pt, lambda r: f'{100 / r.per_stream:.0f}')}** |",
        f"| measured at | {cell(re_, lambda r: f'{r.cameras} cameras')} | "
        f"{cell(pt, lambda r: f'{r.cameras} cameras')} |",
        f"| added latency, median / p95 (ms) | {lat['reencode']['median_ms']:.0f} / "
        f"{lat['reencode']['p95_ms']:.0f} | {lat['passthrough']['median_ms']:.0f} / "
        f"{lat['passthrough']['p95_ms']:.0f} |",
        f"| first frame after the client connects (s) | {lat['reencode']['first_frame_s']:.2f} "
        f"| {lat['passthrough']['first_frame_s']:.2f} |",
        "",
        "## Runs",
        "",
        "| mode | cameras | viewers per camera | window | fps per client (min / mean) | feed CPU % "
        "| relay CPU % | CPU % per stream | other load CPU % | full rate |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.mode} | {r.cameras} | {r.viewers} | {r.window:.0f} s | {min(r.fps):.2f} / "
            f"{statistics.mean(r.fps):.2f} | {r.feed_cpu:.1f} | {r.relay_cpu:.1f} | "
            f"{r.per_stream:.1f} | {r.other_cpu:.0f} | {'yes' if r.passed else 'NO'} |"
        )
    lines += [
        "",
        "## Latency",
        "",
        "From the moment the worker's feed has a (masked) frame to the moment the client has "
        "decoded it, read from a frame counter drawn into the picture, one clock; steady state "
        "(after the first 2 s).",
        "",
        "| mode | frames | median ms | p95 ms | max ms | first frame after connect (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode, v in lat.items():
        lines.append(f"| {mode} | {v['frames']:.0f} | {v['median_ms']:.0f} | {v['p95_ms']:.0f} "
                     f"| {v['max_ms']:.0f} | {v['first_frame_s']:.2f} |")  # fmt: skip
    busy = [r for r in runs if not r.passed]
    lines += ["", "## Notes", ""]
    if busy:
        lines.append(
            "- Runs marked NO ran while other processes used "
            + ", ".join(f"{r.other_cpu:.0f} %" for r in busy)
            + " of a core (the machine is shared); the relay's own CPU in them was "
            + ", ".join(f"{r.relay_cpu:.1f} %" for r in busy)
            + ". Streams per core come from the CPU a stream costs, confirmed at full rate at "
            "the N in the summary."
        )
    lines += [
        "- Passthrough: the first viewer of a camera waits for the camera's next keyframe (up "
        "to one GOP, 1 s here): a worker sends nothing while nobody watches, so the relay holds "
        "nothing then; later viewers start at once from the GOP it holds in memory. Re-encoded "
        "cameras make a keyframe on request.",
        "- The latency includes the client's RTSP demuxer and H.264 decoder (PyAV/FFmpeg) on "
        "the same machine; a control room adds its network and its player's buffer.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    problem = gst_problem()
    if problem is not None:
        print(f"{problem}\n{APT_HINT}", file=sys.stderr)
        return 1
    window = 5.0 if args.quick else 15.0
    with tempfile.TemporaryDirectory() as tmp:
        clip = convert(SOURCE, Path(tmp) / "clip.h264", size=SIZE, fps=FPS, seconds=20)
        plan = [("reencode", n, 1) for n in (1, 2, 4)] + [
            ("passthrough", n, 1) for n in (1, 4, 8)
        ] + [("passthrough", 1, 8), ("reencode", 1, 8)]  # fmt: skip
        runs = []
        for mode, cameras, viewers in plan:
            r = run(mode, cameras, viewers, clip, window)
            if not r.passed and r.other_cpu > 50:
                # Other engineers' work shares the machine: one more try, both rows reported.
                runs.append(r)
                print(f"{mode:12} cameras={cameras} viewers={viewers}: short of full rate "
                      f"with {r.other_cpu:.0f}% other load; again", flush=True)  # fmt: skip
                r = run(mode, cameras, viewers, clip, window)
            verdict = "ok" if r.passed else f"NOT FULL RATE {r.errors}"
            print(f"{mode:12} cameras={cameras} viewers={viewers} fps min {min(r.fps):.2f} "
                  f"feed {r.feed_cpu:.1f}% relay {r.relay_cpu:.1f}% other {r.other_cpu:.0f}% "
                  f"{verdict}", flush=True)  # fmt: skip
            runs.append(r)
        lat = {m: latency(m, clip, window) for m in ("reencode", "passthrough")}
        for m, v in lat.items():
            print(f"latency {m}: {v}", flush=True)
    command = "python bench/relay.py" + (" --quick" if args.quick else "")
    text = write(runs, lat, versions(), window, command)
    if not args.no_write:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
