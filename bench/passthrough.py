"""How many passthrough cameras one machine records, keyframe verification included.

    .venv/bin/python bench/passthrough.py             # writes bench/results/passthrough.md
    .venv/bin/python bench/passthrough.py --quick     # shorter runs, for trying things out
    .venv/bin/python bench/passthrough.py --counts 40 80 --seconds 60

N cameras pull the same 1080p25 H.264 stream from the local GStreamer RTSP server: the sample
footage with the facade plan's masks drawn in by the "camera" (vms's mask colour, BT.709, x264
veryfast, keyframe every second, ~2-4 Mbit/s: what a camera drawing the school plan sends). Each
camera is registered as an ONVIF camera on the test device (tests/peers/onvif_device.py: real
SOAP, Media2 masks) with recording_path passthrough, so the production pipeline does all of it:
supervisor, one worker per camera, masks pushed through Media2, packets remuxed into 10 s MP4
segments (fsynced, hashed, indexed in SQLite), one keyframe decoded and checked at least every
2 s (VMS_PIPELINE__PASSTHROUGH_VERIFY_S).

Per N: every camera's packet rate (>= 99 % of 25/s over the window = full rate), checks passed
(and none failed), segments indexed ok, CPU per worker, the RTSP server's and the API process's
CPU, memory per worker (PSS: shared pages split between the processes that share them), and the
disk write rate. The largest N that passes is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.pipeline import (  # noqa: E402
    PLAN,
    SOURCE,
    cpu_seconds,
    machine_busy_seconds,
    register_cameras,
)
from sample_streams import RtspServerProcess  # noqa: E402

FPS = 25
SIZE = (1920, 1080)
CLIP_SECONDS = 20
MBIT = 4  # the camera's constant bitrate
FULL_RATE = 0.99
RESULTS = REPO / "bench" / "results" / "passthrough.md"


# -- the camera's stream ---------------------------------------------------------------------


def masked_clip(dst: Path) -> tuple[Path, float]:
    """The sample footage at 1080p25 with the plan's camera masks filled in (Annex B H.264);
    returns the path and its bitrate in Mbit/s."""
    from masking import parse_plan
    from masking.incamera import DEFAULT_MASK_COLOR, MaskLimits, camera_masks

    w, h = SIZE
    covered = camera_masks(parse_plan(PLAN), w, h, MaskLimits(4, 16)).covered()
    y, u, v = DEFAULT_MASK_COLOR.stream_yuv("bt709", full_range=False)
    chroma = covered[::2, ::2]
    frames = 0
    with av.open(str(SOURCE)) as inp, av.open(str(dst), "w", format="h264") as out:
        ost = out.add_stream("libx264", rate=FPS)
        ost.width, ost.height, ost.pix_fmt = w, h, "yuv420p"
        ost.codec_context.time_base = Fraction(1, FPS)
        ost.codec_context.colorspace = 1  # BT.709, signalled in the VUI
        ost.codec_context.color_range = 1  # limited
        # Constant bitrate, as cameras are usually set up: the flat masked area costs the
        # stream nothing, so a quality-based encoder would send far less than a camera does.
        kbit = MBIT * 1000
        ost.options = {"preset": "veryfast", "g": str(FPS), "bf": "0", "sc_threshold": "0",
                       "x264-params": f"nal-hrd=cbr:bitrate={kbit}:vbv-maxrate={kbit}:"
                                      f"vbv-bufsize={kbit}:repeat-headers=1"}  # fmt: skip
        src = inp.streams.video[0]
        step = float(1 / (src.average_rate or FPS))
        t = 0.0
        for frame in inp.decode(src):
            # Resample to 25 fps by time (the clip runs at another rate).
            t += step
            while frames < t * FPS and frames < CLIP_SECONDS * FPS:
                pic = frame.reformat(width=w, height=h, format="yuv420p")
                planes = [np.frombuffer(memoryview(p), np.uint8).reshape(p.height, p.line_size)
                          for p in pic.planes]  # fmt: skip
                planes[0][:, :w][covered] = y
                planes[1][:, : w // 2][chroma] = u
                planes[2][:, : w // 2][chroma] = v
                pic.pts, pic.time_base = frames, Fraction(1, FPS)
                pic.colorspace, pic.color_range = 1, 1
                out.mux(ost.encode(pic))
                frames += 1
            if frames >= CLIP_SECONDS * FPS:
                break
        out.mux(ost.encode(None))
    mbit = dst.stat().st_size * 8 / (frames / FPS) / 1e6
    return dst, mbit


# -- a run -----------------------------------------------------------------------------------


@dataclass
class Run:
    cameras: int
    seconds: float
    rate: list[float] = field(default_factory=list)  # packets per second, per camera
    checks: list[int] = field(default_factory=list)  # keyframes checked and passed, per camera
    failed: int = 0  # cameras whose passthrough stopped
    segments_ok: int = 0
    segments_quarantined: int = 0
    worker_cpu: list[float] = field(default_factory=list)  # % of one core, per camera
    worker_pss_mb: list[float] = field(default_factory=list)
    worker_rss_mb: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    api_cpu: float = 0.0  # this process: supervisor thread, SQLite, the ONVIF test device
    other_cpu: float = 0.0
    machine_busy: float = 0.0  # % of one core, the whole machine (200 % = both cores)
    disk_mb_s: float = 0.0
    startup_s: float = 0.0
    passed: bool = False


def _memory_mb(pid: int) -> tuple[float, float]:
    """(PSS, RSS) of a process in MB (Linux smaps_rollup)."""
    pss = rss = 0.0
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
    return pss, rss


def _register(db_url: str, n: int, host: str, port: int, key: str) -> None:
    from tests.peers.onvif_device import ONVIF_PASSWORD, ONVIF_USER

    source = {"kind": "onvif", "host": host, "port": port, "username": ONVIF_USER,
              "password": ONVIF_PASSWORD, "profile_token": "main"}  # fmt: skip
    camera = {"mode": "recording", "source": source, "mask_plan": PLAN,
              "recording_path": "passthrough"}  # fmt: skip
    register_cameras(db_url, key, [camera] * n)


def run_passthrough(url: str, n: int, seconds: float, warmup: float = 8.0) -> Run:
    """N passthrough cameras on the stream at `url` for `seconds` (after start-up + warmup)."""
    from tests.peers.onvif_device import DeviceProfile, MaskSupport, OnvifDevice
    from vms.core.config import PipelineSettings, Settings, generate_key
    from vms.pipeline.supervisor import PipelineSupervisor

    run = Run(n, seconds)
    device = OnvifDevice(
        [DeviceProfile("main", "MainStream", SIZE[0], SIZE[1], FPS, url)],
        media2=True,
        masks=MaskSupport(),
    ).start()
    try:
        with tempfile.TemporaryDirectory(prefix="vms-bench-pt-") as tmp:
            key = generate_key().decode()
            db_url = f"sqlite:///{tmp}/bench.db"
            _register(db_url, n, device.host, device.port, key)
            data = Path(tmp) / "data"
            settings = Settings(
                profile="test", data_dir=data, database_url=db_url, secret_key=SecretStr(key),
                pipeline=PipelineSettings(segment_seconds=10.0),
            )  # fmt: skip
            sup = PipelineSupervisor(settings, poll_s=2.0)
            started = time.monotonic()
            sup.start()
            try:
                _measure(sup, run, data, seconds, warmup, started, n)
            finally:
                sup.stop()
    finally:
        device.stop()
    return run


def _measure(
    sup: Any, run: Run, data: Path, seconds: float, warmup: float, started: float, n: int
) -> None:
    deadline = time.monotonic() + 60 + n
    ids: list[int] = []
    while time.monotonic() < deadline:
        ids = sup.camera_ids()
        views = [sup.status(i) for i in ids]
        if len(ids) == n and all(v.passthrough_checks > 0 and v.state.value == "streaming"
                                 for v in views):  # fmt: skip
            break
        time.sleep(0.5)
    else:
        bad = [(v.camera_id, v.state.value, v.last_error) for v in views
               if not v.passthrough_checks][:3]  # fmt: skip
        raise RuntimeError(f"{n} cameras did not all verify: {bad}")
    run.startup_s = round(time.monotonic() - started, 1)
    time.sleep(warmup)
    pids = {i: sup.worker_pid(i) for i in ids}
    before = {i: sup.status(i) for i in ids}
    cpu0 = {i: cpu_seconds(p) for i, p in pids.items() if p}
    server_pid = _server_pid
    srv0, own0, busy0 = cpu_seconds(server_pid), time.process_time(), machine_busy_seconds()
    disk0, t0 = _bytes(data), time.monotonic()
    time.sleep(seconds / 2)
    mem = [_memory_mb(p) for p in pids.values() if p]
    time.sleep(seconds / 2)
    elapsed = time.monotonic() - t0
    after = {i: sup.status(i) for i in ids}
    cpu1 = {i: cpu_seconds(p) for i, p in pids.items() if p}
    run.server_cpu = round(100 * (cpu_seconds(server_pid) - srv0) / elapsed, 1)
    run.api_cpu = round(100 * (time.process_time() - own0) / elapsed, 1)
    run.machine_busy = round(100 * (machine_busy_seconds() - busy0) / elapsed, 1)
    ours = sum(cpu1[i] - cpu0[i] for i in cpu1) / elapsed * 100
    run.other_cpu = round(max(0.0, run.machine_busy - ours - run.server_cpu - run.api_cpu), 1)
    run.disk_mb_s = round((_bytes(data) - disk0) / elapsed / 1e6, 2)
    run.worker_pss_mb = [round(p, 1) for p, _ in mem]
    run.worker_rss_mb = [round(r, 1) for _, r in mem]
    for i in ids:
        a, b = after[i], before[i]
        assert a.updated_at is not None
        assert b.updated_at is not None
        span = (a.updated_at - b.updated_at).total_seconds()
        run.rate.append(round((a.frames_in - b.frames_in) / span, 2))
        run.checks.append(a.passthrough_checks - b.passthrough_checks)
        run.worker_cpu.append(round(100 * (cpu1[i] - cpu0[i]) / elapsed, 2))
        run.failed += bool(a.passthrough_failed) or a.recording_path != "passthrough"
    ok, quarantined = _segments(sup)
    run.segments_ok, run.segments_quarantined = ok, quarantined
    restarted = any(after[i].restarts or sup.worker_pid(i) != pids[i] for i in ids)
    min_checks = seconds / 2.5  # a check at least every 2 s (+ jitter)
    run.passed = (
        not restarted
        and run.failed == 0
        and min(run.rate) >= FULL_RATE * FPS
        and min(run.checks) >= min_checks
    )


def _segments(sup: Any) -> tuple[int, int]:
    from sqlalchemy import func, select

    from retention.models import Segment, SegmentState
    from vms.core.db import make_engine

    engine = make_engine(sup.settings.db_url)
    try:
        with engine.connect() as conn:
            rows = dict(
                conn.execute(select(Segment.state, func.count()).group_by(Segment.state)).all()
            )
    finally:
        engine.dispose()
    return int(rows.get(SegmentState.ok, 0)), int(rows.get(SegmentState.quarantined, 0))


def _bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in data.rglob("*") if p.is_file())


_server_pid = 0


def _log(run: Run) -> None:
    print(
        f"  N={run.cameras} {run.seconds:.0f}s: rate min {min(run.rate):.2f}/s, checks min "
        f"{min(run.checks)}, worker CPU mean {sum(run.worker_cpu) / len(run.worker_cpu):.2f}%, "
        f"PSS mean {sum(run.worker_pss_mb) / len(run.worker_pss_mb):.0f} MB, RTSP server "
        f"{run.server_cpu:.0f}%, API {run.api_cpu:.0f}%, machine {run.machine_busy:.0f}%, "
        f"disk {run.disk_mb_s:.1f} MB/s, {'PASS' if run.passed else 'FAIL'}",
        flush=True,
    )


# -- report ----------------------------------------------------------------------------------


def report(meta: dict[str, Any], runs: list[Run]) -> str:
    best = max((r for r in runs if r.passed), key=lambda r: r.cameras, default=None)
    lines = [
        "# Passthrough benchmark",
        "",
        f"Generated {meta['when']} by `python bench/passthrough.py{meta['args']}`.",
        "",
        f"- machine: {meta['machine']}",
        f"- PyAV {av.__version__}; the stream: {SOURCE.name} at 1080p25 with the facade plan's "
        "masks drawn in by the camera (x264 veryfast, constant bitrate, keyframe every 1 s, "
        "BT.709), "
        f"{meta['mbit']:.1f} Mbit/s; one GStreamer RTSP server on this machine serves it to all "
        "cameras",
        "- each camera: an ONVIF camera (test device, Media2 masks) with recording_path "
        "passthrough: masks pushed, packets remuxed into 10 s segments (fsynced, hashed, indexed "
        "in SQLite), one keyframe decoded and checked at least every 2 s",
        f"- full rate: every camera's packet rate >= {FULL_RATE:.0%} of {FPS}/s over the window, "
        "checks passing at least every 2.5 s, no passthrough stopped, no worker restarted",
        "",
        "## Runs",
        "",
        "| N | window | packets/s per camera (min / mean) | checks per camera (min) | worker CPU "
        "% (mean / max) | worker PSS MB (mean) | worker RSS MB (mean) | RTSP server CPU % | API "
        "process CPU % | machine busy % | disk MB/s | start-up s | full rate |",
        "|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.cameras} | {r.seconds:.0f} s | {min(r.rate):.2f} / "
            f"{sum(r.rate) / len(r.rate):.2f} | {min(r.checks)} | "
            f"{sum(r.worker_cpu) / len(r.worker_cpu):.2f} / {max(r.worker_cpu):.2f} | "
            f"{sum(r.worker_pss_mb) / len(r.worker_pss_mb):.0f} | "
            f"{sum(r.worker_rss_mb) / len(r.worker_rss_mb):.0f} | {r.server_cpu:.0f} | "
            f"{r.api_cpu:.0f} | {r.machine_busy:.0f} | {r.disk_mb_s:.1f} | {r.startup_s:.0f} | "
            f"{'yes' if r.passed else 'no'} |"
        )
    lines += ["", "CPU is % of one core (the machine has 200 %)."]
    if best is not None:
        per_cam = sum(best.worker_cpu) / len(best.worker_cpu)
        shared = (best.server_cpu + best.api_cpu) / best.cameras
        lines += [
            "",
            "## Summary",
            "",
            f"- **largest N at full rate: {best.cameras} passthrough 1080p25 cameras** "
            f"({best.seconds:.0f} s window), verification included",
            f"- CPU per camera: {per_cam:.2f} % of a core in its worker, plus {shared:.2f} % "
            "for the RTSP server and the API process (supervisor, SQLite) per camera",
            f"- memory per camera: {sum(best.worker_pss_mb) / len(best.worker_pss_mb):.0f} MB "
            f"PSS ({sum(best.worker_rss_mb) / len(best.worker_rss_mb):.0f} MB RSS) per worker",
            f"- disk: {best.disk_mb_s / best.cameras * 8:.2f} Mbit/s per camera written",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    global _server_pid
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 20, 40, 60, 80])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="counts 5 10, 15 s windows")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    counts, seconds = (args.counts, args.seconds) if not args.quick else ([5, 10], 15.0)
    with tempfile.TemporaryDirectory(prefix="vms-bench-clip-") as tmp:
        clip, mbit = masked_clip(Path(tmp) / "masked1080.h264")
        print(f"clip: {mbit:.1f} Mbit/s", flush=True)
        runs: list[Run] = []
        with RtspServerProcess({"/masked1080": clip}) as server:
            _server_pid = server.pid or 0
            for n in counts:
                run = run_passthrough(server.url("/masked1080"), n, seconds)
                runs.append(run)
                _log(run)
                if not run.passed:
                    break
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "args": "".join(f" {a}" for a in sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}",
        "mbit": mbit,
    }
    args.out.write_text(report(meta, runs))
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "runs": [asdict(r) for r in runs]}, indent=1)
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
