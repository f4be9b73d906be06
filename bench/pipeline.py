"""How many cameras the whole pipeline carries on this machine, against decode + encode.

    .venv/bin/python bench/pipeline.py              # writes bench/results/pipeline.md
    .venv/bin/python bench/pipeline.py --quick      # shorter runs, for trying things out

N cameras pull the same 720p or 1080p stream (25 fps) from the local GStreamer RTSP server and
go through the production pipeline: supervisor, one worker process per camera, decode -> mask
(the facade plan, ~10 % of the frame kept) -> x264 -> 10 s MP4 segments, fsynced, hashed and
indexed in SQLite. For each N it reports the frame rate every camera sustained, the CPU each
worker used, and whether every camera kept full frame rate (>= 99 % of 25 fps, measured over
the window after start-up). The largest N that passes is confirmed with a 60 s run.

The reference, measured in the same run: decode + encode of the same clip with the recorder's
encoder settings in one process pinned to one core, as fast as it goes. Two cores at that rate
carry `2 * fps / 25` cameras: the ceiling for any pipeline that re-encodes. Decode + mask +
encode in the same loop shows what masking alone costs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from sample_streams import APT_HINT, RtspServerProcess, gst_problem  # noqa: E402
from sample_streams.convert import convert  # noqa: E402

FPS = 25
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
SOURCE = REPO / ".." / "shared" / "sample_media" / "video" / "market_street_1906_awbc_sample.mp4"
CLIP_SECONDS = 20
PRESET, CRF = "ultrafast", 23  # what the recorder uses (vms.pipeline.config.WorkerConfig)
FULL_RATE = 0.99
OTHER_LOAD_MAX = 20.0  # % of one core used by other processes during a run
RESULTS = REPO / "bench" / "results" / "pipeline.md"
# Where the CPU goes and what each change bought (bench/profile.py and bench/ab.py runs, kept by
# hand): included in the results page after the summary.
PROFILE_NOTES = REPO / "bench" / "results" / "pipeline-profile.md"

# The facade case of bench/masking.py: everything anonymised except a 2 m strip along a wall
# (about 10 % of the frame). Its cost does not depend on what the picture shows.
PLAN: dict[str, Any] = {
    "version": 1,
    "method": "pixelate",
    "default": "anonymise",
    "calibration": [
        {"image": [0.0, 0.56], "ground": [0.0, 0.0]},
        {"image": [1.0, 0.53], "ground": [14.0, 0.0]},
        {"image": [1.0, 1.0], "ground": [14.0, 10.0]},
        {"image": [0.0, 1.0], "ground": [0.0, 9.0]},
    ],
    "zones": [
        {
            "type": "facade_strip",
            "action": "keep",
            "facade": [[0.0, 0.0], [14.0, 0.0]],
            "width_m": 2.0,
        }
    ],
}


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (Linux /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    busy = sum(values[:3]) + sum(values[5:8])  # user nice system, irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_mib(pid: int) -> float:
    """Proportional set size of a process in MiB (pages shared with others count in part)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# -- the reference: decode + (mask +) encode on one pinned core --------------------------------


def _reference(clip: str, mask: bool, out_dir: str, conn: Any) -> None:
    os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    import cv2

    cv2.setNumThreads(1)
    from masking import Masker

    masker = Masker(PLAN) if mask else None
    frames = 0
    with av.open(clip) as inp, av.open(os.path.join(out_dir, "ref.mp4"), "w", format="mp4") as out:
        ist = inp.streams.video[0]
        ist.codec_context.thread_count = 1
        ost = out.add_stream("libx264", rate=FPS)
        ost.width, ost.height, ost.pix_fmt = (
            ist.codec_context.width,
            ist.codec_context.height,
            "yuv420p",
        )
        ost.codec_context.time_base = Fraction(1, 1000)
        ost.options = {"preset": PRESET, "crf": str(CRF), "threads": "1"}
        t0 = time.process_time()
        for frame in inp.decode(ist):
            if masker is not None:
                frame = masker.apply_yuv420(frame)
            frame.pts, frame.time_base = frames * 40, Fraction(1, 1000)
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(ost.encode(frame))
            frames += 1
        out.mux(ost.encode(None))
        elapsed = time.process_time() - t0
    conn.send(frames / elapsed)


def reference_fps(clip: Path, mask: bool, rounds: int) -> float:
    """Median fps (by CPU time) over `rounds` runs in a fresh process pinned to one core."""
    ctx = multiprocessing.get_context("spawn")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_reference, args=(str(clip), mask, tmp, send))
            p.start()
            results.append(float(recv.recv()))
            p.join()
    return sorted(results)[len(results) // 2]


# -- the pipeline --------------------------------------------------------------------------------


@dataclass
class Run:
    resolution: str
    cameras: int
    seconds: float
    fps: list[float] = field(default_factory=list)  # per camera, frames delivered / s
    dropped: list[int] = field(default_factory=list)
    worker_cpu: list[float] = field(default_factory=list)  # per camera, % of one core
    server_cpu: float = 0.0  # RTSP server, % of one core
    supervisor_cpu: float = 0.0  # the API process (supervisor thread, DB), % of one core
    other_cpu: float = 0.0  # everything else on the machine meanwhile, % of one core
    segments: int = 0
    passed: bool = False
    system: str = "vms"  # "vms" (the pipeline) or "ffmpeg" (one ffmpeg process per camera)
    worker_pss_mib: list[float] = field(default_factory=list)  # per camera process, at the end


def register_cameras(db_url: str, key: str, cameras: list[dict[str, Any]]) -> list[int]:
    """A fresh bench database: an organisation, its admin, a basis that allows live view and
    recording, and `cameras` registered through the registry service (CameraCreate bodies;
    name, purpose, retention and the basis are filled in). Returns the cameras' ids."""
    from permits import service as permit_service
    from permits.models import BasisKind
    from permits.schemas import LegalBasisCreate
    from registry import service as registry_service
    from registry.schemas import CameraCreate
    from vms.all_models import Base
    from vms.core import accounts
    from vms.core.auth import principal_for
    from vms.core.crypto import SecretBox
    from vms.core.db import make_engine, make_sessionmaker, session_scope
    from vms.core.models import Role

    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    ids: list[int] = []
    with session_scope(make_sessionmaker(engine)) as session:
        org = accounts.create_organisation(session=session, actor=None, name="Bench")
        admin = accounts.create_user(session=session, actor=None, email="admin@vms.local",
                                     organisation_id=org.id, role=Role.admin)  # fmt: skip
        actor = principal_for(session, admin)
        basis = permit_service.create_basis(
            session=session,
            actor=actor,
            data=LegalBasisCreate(
                kind=BasisKind.not_required,
                status="in_force",
                title="Bench",
                not_required_reason="benchmark",
                live_view_allowed=True,
                recording_allowed=True,
            ),
        )
        for n, body in enumerate(cameras):
            defaults = {"name": f"Bench {n}", "purpose": "benchmark", "purpose_category": "other",
                        "retention_hours": 24, "legal_basis_id": basis.id}  # fmt: skip
            camera = registry_service.create_camera(
                session=session,
                actor=actor,
                box=SecretBox(key.encode()),
                file_roots=(),
                data=CameraCreate.model_validate(defaults | body),
            )
            ids.append(camera.id)
    engine.dispose()
    return ids


def _register(db_url: str, urls: list[str], key: str) -> None:
    cameras = [{"mode": "live_and_recording", "source": {"kind": "rtsp", "url": url},
                "mask_plan": PLAN} for url in urls]  # fmt: skip
    register_cameras(db_url, key, cameras)


@contextmanager
def pipeline_running(
    server: RtspServerProcess,
    resolution: str,
    n: int,
    overrides: dict[str, Any] | None = None,
) -> Iterator[tuple[Any, list[int]]]:
    """N cameras of `resolution` through the production pipeline, all streaming: yields the
    supervisor and the camera ids; stops everything on exit."""
    from vms.core.config import PipelineSettings, Settings, generate_key
    from vms.pipeline.supervisor import PipelineSupervisor

    with tempfile.TemporaryDirectory(prefix="vms-bench-") as tmp:
        key = generate_key().decode()
        db_url = f"sqlite:///{tmp}/bench.db"
        _register(db_url, [server.url(f"/{resolution}")] * n, key)
        settings = Settings(
            profile="test",
            data_dir=Path(tmp) / "data",
            database_url=db_url,
            secret_key=SecretStr(key),
            pipeline=PipelineSettings(segment_seconds=10.0),
        )
        sup = PipelineSupervisor(settings, worker_overrides=overrides)
        sup.start()
        try:
            deadline = time.monotonic() + 60
            ids: list[int] = []
            while time.monotonic() < deadline:
                ids = sup.camera_ids()
                views = [sup.status(i) for i in ids]
                if len(ids) == n and all(v.state.value == "streaming" for v in views):
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"{n} cameras did not all start streaming")
            yield sup, ids
        finally:
            sup.stop()


def run_pipeline(
    server: RtspServerProcess,
    resolution: str,
    n: int,
    seconds: float,
    warmup: float,
    overrides: dict[str, Any] | None = None,
) -> Run:
    run = Run(resolution, n, seconds)
    with pipeline_running(server, resolution, n, overrides) as (sup, ids):
        time.sleep(warmup)
        pids = {i: sup.worker_pid(i) for i in ids}
        before = {i: sup.status(i) for i in ids}
        cpu0 = {i: cpu_seconds(pid) for i, pid in pids.items() if pid}
        srv0, own0, t0 = cpu_seconds(server.pid or 0), time.process_time(), time.monotonic()
        busy0 = machine_busy_seconds()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        after = {i: sup.status(i) for i in ids}
        cpu1 = {i: cpu_seconds(pid) for i, pid in pids.items() if pid}
        run.worker_pss_mib = [round(pss_mib(pid), 1) for pid in pids.values() if pid]
        run.server_cpu = 100 * (cpu_seconds(server.pid or 0) - srv0) / elapsed
        run.supervisor_cpu = 100 * (time.process_time() - own0) / elapsed
        ours = sum(cpu1[i] - cpu0[i] for i in cpu1) / elapsed * 100
        busy = 100 * (machine_busy_seconds() - busy0) / elapsed
        run.other_cpu = max(0.0, busy - ours - run.server_cpu - run.supervisor_cpu)
        for i in ids:
            # Counters come with the worker's own timestamp (reports are up to 1 s apart).
            a, b = after[i], before[i]
            assert a.updated_at is not None
            assert b.updated_at is not None
            span = (a.updated_at - b.updated_at).total_seconds()
            out = (a.frames_out - b.frames_out) / span
            run.fps.append(round(out, 2))
            run.dropped.append(after[i].dropped_frames - before[i].dropped_frames)
            run.worker_cpu.append(round(100 * (cpu1[i] - cpu0[i]) / elapsed, 1))
            run.segments += after[i].segments_written
        restarted = any(after[i].restarts or sup.worker_pid(i) != pids[i] for i in ids)
        run.passed = not restarted and min(run.fps) >= FULL_RATE * FPS
    return run


Runner = Callable[[int, float, float], Run]  # (cameras, seconds, warmup) -> Run


def measured(runner: Runner, n: int, seconds: float, warmup: float) -> Run:
    """A run, repeated (up to 3 times) while other work on this shared machine took more than
    OTHER_LOAD_MAX of a core: the result should describe the pipeline, not the neighbours."""
    best: Run | None = None
    for _ in range(3):
        run = runner(n, seconds, warmup)
        if best is None or run.other_cpu < best.other_cpu:
            best = run
        if run.other_cpu <= OTHER_LOAD_MAX:
            break
        print(f"  (other load {run.other_cpu:.0f}% during N={n}: measuring again)", flush=True)
    assert best is not None
    return best


def largest_n(
    runner: Runner, start: int, ceiling: int, probe_s: float, confirm_s: float
) -> tuple[list[Run], int]:
    """Probe N briefly from `start` upwards until a run fails (or downwards until one passes),
    then confirm the best with a long run (one camera fewer each time the long run fails)."""
    runs: list[Run] = []
    n = max(1, min(start, ceiling))
    first = measured(runner, n, probe_s, warmup=3.0)
    runs.append(first)
    _log(first, "probe")
    best = 0
    if first.passed:
        best = n
        for m in range(n + 1, ceiling + 3):
            run = measured(runner, m, probe_s, warmup=3.0)
            runs.append(run)
            _log(run, "probe")
            if not run.passed:
                break
            best = m
    else:
        for m in range(n - 1, 0, -1):
            run = measured(runner, m, probe_s, warmup=3.0)
            runs.append(run)
            _log(run, "probe")
            if run.passed:
                best = m
                break
    while best > 0:
        run = measured(runner, best, confirm_s, warmup=5.0)
        runs.append(run)
        _log(run, "confirm")
        if run.passed:
            break
        best -= 1
    return runs, best


# -- the peer: one ffmpeg process per camera -----------------------------------------------------


def ffmpeg_mask_file(path: Path, width: int, height: int) -> int:
    """The plan's keep mask as one raw yuv420p frame for `maskedmerge` (255 = keep the camera's
    pixel): luma from the compiled plan, chroma from its 4:2:0 chroma mask (a chroma plane
    converted from a grey mask would sit at 128 and blend half-and-half). Returns the block
    size the plan pixelates with at this size."""
    import cv2

    from masking import compile_plan, parse_plan
    from masking.compile import chroma_mask

    cp = compile_plan(parse_plan(PLAN), width, height)
    keep_y = cv2.bitwise_not(cp.anon_mask)
    keep_c = cv2.bitwise_not(chroma_mask(cp.anon_mask))
    path.write_bytes(keep_y.tobytes() + keep_c.tobytes() + keep_c.tobytes())
    return cp.strength_px


def ffmpeg_command(url: str, mask: Path, size: tuple[int, int], block: int, out: Path) -> list[str]:
    """What a user would script by hand: RTSP in, the same mask as a filter graph (pixelate by
    area-shrinking and nearest-neighbour growing, kept strip put back through `maskedmerge`),
    the recorder's x264 settings, 10 s MP4 segments. One thread for each stage, like a worker."""
    w, h = size
    graph = (
        f"[0:v]split[a][b];[a]scale=iw/{block}:ih/{block}:flags=area,"
        f"scale={w}:{h}:flags=neighbor[px];[px][b][1:v]maskedmerge[out]"
    )
    return [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-threads",
        "1",
        "-i",
        url,
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-video_size",
        f"{w}x{h}",
        "-i",
        str(mask),
        "-filter_complex_threads",
        "1",
        "-filter_complex",
        graph,
        "-map",
        "[out]",
        "-an",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-preset",
        PRESET,
        "-crf",
        str(CRF),
        "-threads",
        "1",
        "-f",
        "segment",
        "-segment_time",
        "10",
        "-segment_format",
        "mp4",
        "-reset_timestamps",
        "1",
        str(out / "%05d.mp4"),
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.5",
    ]


class _Progress(threading.Thread):
    """Reads one ffmpeg's `-progress` output: (arrival time, frames encoded) per report."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.reports: list[tuple[float, int]] = []

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("frame="):
                with contextlib.suppress(ValueError):
                    self.reports.append((time.monotonic(), int(line[6:])))

    def at(self, t: float) -> tuple[float, int]:
        """The last report at or before `t`."""
        best = (t, 0)
        for r in self.reports:
            if r[0] > t:
                break
            best = r
        return best


def run_ffmpeg(
    server: RtspServerProcess, resolution: str, n: int, seconds: float, warmup: float
) -> Run:
    run = Run(resolution, n, seconds, system="ffmpeg")
    size = SIZES[resolution]
    with tempfile.TemporaryDirectory(prefix="vms-bench-ffmpeg-") as tmp:
        mask = Path(tmp) / "mask.yuv"
        block = ffmpeg_mask_file(mask, *size)
        procs: list[subprocess.Popen[str]] = []
        readers: list[_Progress] = []
        try:
            for i in range(n):
                out = Path(tmp) / f"cam{i}"
                out.mkdir()
                cmd = ffmpeg_command(server.url(f"/{resolution}"), mask, size, block, out)
                proc = subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
                )
                procs.append(proc)
                reader = _Progress(proc)
                reader.start()
                readers.append(reader)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(r.reports for r in readers):
                time.sleep(0.2)
            time.sleep(warmup)
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            srv0, t0, busy0 = cpu_seconds(server.pid or 0), time.monotonic(), machine_busy_seconds()
            time.sleep(seconds)
            t1 = time.monotonic()
            elapsed = t1 - t0
            cpu1 = [cpu_seconds(p.pid) for p in procs]
            run.worker_pss_mib = [round(pss_mib(p.pid), 1) for p in procs]
            run.server_cpu = 100 * (cpu_seconds(server.pid or 0) - srv0) / elapsed
            busy = 100 * (machine_busy_seconds() - busy0) / elapsed
            ours = 100 * sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / elapsed
            run.other_cpu = max(0.0, busy - ours - run.server_cpu)
            alive = all(p.poll() is None for p in procs)
            for reader, a, b in zip(readers, cpu0, cpu1, strict=True):
                (ta, fa), (tb, fb) = reader.at(t0), reader.at(t1)
                run.fps.append(round((fb - fa) / (tb - ta), 2) if tb > ta else 0.0)
                run.dropped.append(0)
                run.worker_cpu.append(round(100 * (b - a) / elapsed, 1))
            run.segments = sum(len(list((Path(tmp) / f"cam{i}").glob("*.mp4"))) for i in range(n))
            run.passed = alive and min(run.fps) >= FULL_RATE * FPS
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return run


def _log(run: Run, kind: str) -> None:
    print(
        f"  {kind} {run.system} {run.resolution} N={run.cameras} {run.seconds:.0f}s: fps min "
        f"{min(run.fps):.2f}, worker CPU {sum(run.worker_cpu) / len(run.worker_cpu):.0f}%, "
        f"drops {sum(run.dropped)}, other load {run.other_cpu:.0f}%, "
        f"{'PASS' if run.passed else 'FAIL'}",
        flush=True,
    )


# -- passthrough: the camera's own H.264, remuxed, keyframes checked (bench/passthrough.py) ------


def passthrough_runs(tmp: Path, counts: list[int], seconds: float) -> dict[str, Any]:
    """1080p25 passthrough cameras (ONVIF test device, Media2 masks, the camera's masked stream
    remuxed, a keyframe checked at least every 2 s) at each count until one fails; the same
    measurements as bench/passthrough.py, in this run, after the transcode runs."""
    from bench import passthrough as pt

    clip, mbit = pt.masked_clip(tmp / "masked1080.h264")
    print(f"passthrough: the camera's stream {mbit:.1f} Mbit/s", flush=True)
    runs: list[Any] = []
    with RtspServerProcess({"/masked1080": clip}) as server:
        pt._server_pid = server.pid or 0
        for n in counts:
            run = pt.run_passthrough(server.url("/masked1080"), n, seconds)
            runs.append(run)
            pt._log(run)
            if not run.passed:
                break
    best = max((r for r in runs if r.passed), key=lambda r: r.cameras, default=None)
    failed = next((r for r in runs if not r.passed), None)
    return {"mbit": mbit, "runs": [asdict(r) for r in runs], "best": _pt_summary(best),
            "first_failed": _pt_summary(failed)}  # fmt: skip


def _pt_summary(run: Any) -> dict[str, Any] | None:
    if run is None:
        return None
    n = run.cameras
    return {
        "cameras": n,
        "cpu_per_camera": sum(run.worker_cpu) / n,
        "shared_per_camera": (run.server_cpu + run.api_cpu) / n,
        "server_cpu": run.server_cpu,
        "api_cpu": run.api_cpu,
        "machine_busy": run.machine_busy,
        "pss_mib": sum(run.worker_pss_mb) / n,
        "rss_mib": sum(run.worker_rss_mb) / n,
        "min_rate": min(run.rate),
        "min_checks": min(run.checks),
        "disk_mbit_per_camera": run.disk_mb_s * 8 / n,
        "failed_cameras": run.failed,
    }


def passthrough_rows(pt: dict[str, Any] | None) -> list[str]:
    """Summary rows (1080p only: the passthrough stream is the camera's 1080p25)."""
    best = (pt or {}).get("best")
    if not best:
        return ["| **passthrough + verification: largest N at full rate** | - | - |"]
    return [
        f"| **passthrough + verification: largest N at full rate for 60 s** | - | "
        f"**{best['cameras']}** |",
        f"| CPU per camera, passthrough worker (% of a core, at that N) | - | "
        f"{best['cpu_per_camera']:.2f} |",
        f"| shared per passthrough camera: RTSP server + API process (% of a core) | - | "
        f"{best['shared_per_camera']:.2f} |",
        f"| memory per camera, passthrough worker PSS (MiB) | - | {best['pss_mib']:.0f} |",
    ]


def passthrough_notes(pt: dict[str, Any] | None) -> list[str]:
    if not pt or not pt.get("runs"):
        return []
    best, failed = pt.get("best"), pt.get("first_failed")
    lines = ["", "### Passthrough: where the limit is", ""]
    if best:
        lines.append(
            f"At {best['cameras']} cameras the whole machine was {best['machine_busy']:.0f} % "
            f"busy (of 200 %): workers {best['cpu_per_camera'] * best['cameras']:.0f} %, the "
            f"RTSP server {best['server_cpu']:.0f} %, the API process (supervisor, SQLite, the "
            f"ONVIF test device) {best['api_cpu']:.0f} %; disk "
            f"{best['disk_mbit_per_camera'] * best['cameras']:.0f} Mbit/s written."
        )
    if failed:
        lines.append(
            f"The first count that failed: {failed['cameras']} cameras (machine "
            f"{failed['machine_busy']:.0f} % busy, slowest camera {failed['min_rate']:.2f} "
            f"packets/s, fewest checks {failed['min_checks']}, passthrough stopped on "
            f"{failed['failed_cameras']})."
        )
    else:
        lines.append("No count tried failed: the limit lies beyond the largest count tried.")
    return lines


def passthrough_table(pt: dict[str, Any] | None) -> list[str]:
    if not pt or not pt.get("runs"):
        return []
    lines = [
        "",
        f"Passthrough, 1080p25 camera stream of {pt['mbit']:.1f} Mbit/s (the facade plan's "
        "masks drawn in by the camera):",
        "",
        "| N | window | packets/s per camera (min / mean) | checks per camera (min) | worker "
        "CPU % (mean / max) | worker PSS MiB | RTSP server CPU % | API process CPU % | machine "
        "busy % | disk MB/s | full rate |",
        "|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in pt["runs"]:
        n = r["cameras"]
        lines.append(
            f"| {n} | {r['seconds']:.0f} s | {min(r['rate']):.2f} / {sum(r['rate']) / n:.2f} "
            f"| {min(r['checks'])} | {sum(r['worker_cpu']) / n:.2f} / {max(r['worker_cpu']):.2f} "
            f"| {sum(r['worker_pss_mb']) / n:.0f} | {r['server_cpu']:.0f} | {r['api_cpu']:.0f} "
            f"| {r['machine_busy']:.0f} | {r['disk_mb_s']:.1f} | "
            f"{'yes' if r['passed'] else 'no'} |"
        )
    return lines


# -- report --------------------------------------------------------------------------------------


def report(meta: dict[str, Any], results: dict[str, Any], extra: str = "") -> str:
    """The results page. `extra` (markdown) is inserted after the summary: the profiles and the
    changes that were measured, which come from bench/profile.py and bench/ab.py runs."""
    lines = [
        "# Pipeline benchmark",
        "",
        f"Generated {meta['when']} by `python bench/pipeline.py {meta['args']}`.".replace(
            "py ``", "py`"
        ),
        "",
        f"- machine: {meta['machine']}",
        f"- versions: {meta.get('versions', '')}",
        f"- encoder: libx264 preset {PRESET}, crf {CRF}, 1 thread per camera (both systems); "
        "decoder 1 thread; 10 s MP4 segments (vms: fsynced, hashed, indexed in SQLite; ffmpeg: "
        "segment muxer only)",
        f"- cameras: N clients of the GStreamer RTSP server on this machine, one {FPS} fps "
        f"stream per resolution ({SOURCE.name} scaled up, {CLIP_SECONDS} s loop); mask: the "
        "facade plan of bench/masking.py (pixelate, ~10 % of the frame kept)",
        "- vms transcode: the production pipeline (supervisor, one worker process per camera), "
        f"worker settings {json.dumps(meta.get('overrides') or {})} over the defaults (frame "
        "queue 8, frame batch 4 while nobody watches)",
        "- ffmpeg peer: one `ffmpeg` per camera, `-rtsp_transport tcp -i rtsp://...`, the same "
        "mask as a filter graph (`split`, `scale=iw/B:ih/B:flags=area`, `scale=W:H:flags="
        "neighbor`, `maskedmerge` with the plan's keep mask as a yuv420p frame, chroma from the "
        "4:2:0 chroma mask; B = the plan's block size), the same x264 settings, `-f segment "
        "-segment_time 10` MP4 out, `-threads 1` for decoder, filters and encoder",
        f"- full frame rate: every camera delivered >= {FULL_RATE:.0%} of {FPS} fps through the "
        "whole window, no worker restarted (ffmpeg: none exited)",
        "- ceiling: decode + encode of the same clip with the same encoder settings, one process "
        "pinned to one core, as fast as it goes (fps by CPU time, median of 3); `2 x fps / 25` "
        "is how many cameras two cores could carry if nothing else ran",
        "",
        "## Summary",
        "",
        "| | 720p | 1080p |",
        "|---|---:|---:|",
    ]
    sizes = [r for r in ("720p", "1080p") if r in results]

    def get(res: str, *keys: str) -> Any:
        node: Any = results[res]
        for k in keys:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        return node if not isinstance(node, dict) else None

    def row(label: str, fmt: str, *keys: str) -> str:
        cells = []
        for res in ("720p", "1080p"):
            value = get(res, *keys) if res in sizes else None
            cells.append(fmt.format(value) if value is not None else "-")
        return f"| {label} | " + " | ".join(cells) + " |"

    lines += [
        row("decode + encode, one core (fps)", "{:.0f}", "ref_fps"),
        row("decode + mask + encode, one core (fps)", "{:.0f}", "ref_mask_fps"),
        row(
            "**ceiling**: cameras two cores carry at decode + encode speed", "{:.1f}", "ref_cameras"
        ),
        row("**vms transcode: largest N at full frame rate for 60 s**", "**{}**", "vms", "best"),
        row("vms transcode: ratio to the ceiling", "{:.2f}", "vms", "ratio"),
        row(
            "**ffmpeg per camera: largest N at full frame rate for 60 s**",
            "**{}**",
            "ffmpeg",
            "best",
        ),
        row("ffmpeg per camera: ratio to the ceiling", "{:.2f}", "ffmpeg", "ratio"),
        *passthrough_rows(results.get("passthrough")),
        row(
            "CPU per camera, vms worker (% of a core, at that N)", "{:.1f}", "vms", "cpu_per_camera"
        ),
        row(
            "CPU per camera, ffmpeg process (% of a core, at that N)",
            "{:.1f}",
            "ffmpeg",
            "cpu_per_camera",
        ),
        row("CPU per camera at decode + encode speed (% of a core)", "{:.1f}", "ref_cpu"),
        row("CPU per delivered frame, vms / ffmpeg (ms)", "{:.2f}", "vms", "ms_per_frame"),
        row("", "{:.2f}", "ffmpeg", "ms_per_frame"),
        row(
            "shared by all cameras: RTSP server / API process (% of a core, vms run)",
            "{:.1f}",
            "vms",
            "server_cpu",
        ),
        row("", "{:.1f}", "vms", "supervisor_cpu"),
        row("memory per camera, vms worker PSS (MiB)", "{:.0f}", "vms", "pss_mib"),
        row("memory per camera, ffmpeg PSS (MiB)", "{:.0f}", "ffmpeg", "pss_mib"),
        row(
            "sustained fps per camera at that N, vms (min over cameras)",
            "{:.2f}",
            "vms",
            "best_fps",
        ),
    ]
    lines = [line for line in lines if not line.startswith("|  |")]
    lines += passthrough_notes(results.get("passthrough"))
    if extra:
        lines += ["", extra.strip()]
    lines += [
        "",
        "## Runs",
        "",
        "| system | resolution | N | window | fps per camera (min / mean) | drops | CPU % per "
        "camera (mean) | PSS MiB | RTSP server CPU % | API process CPU % | other load CPU % "
        "| full rate |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for res in sizes:
        for run in results[res]["runs"]:
            fps, cpu, pss = run["fps"], run["worker_cpu"], run.get("worker_pss_mib") or [0.0]
            lines.append(
                f"| {run.get('system', 'vms')} | {res} | {run['cameras']} | {run['seconds']:.0f} s "
                f"| {min(fps):.2f} / {sum(fps) / len(fps):.2f} | {sum(run['dropped'])} "
                f"| {sum(cpu) / len(cpu):.1f} | {sum(pss) / len(pss):.0f} "
                f"| {run['server_cpu']:.0f} | {run['supervisor_cpu']:.0f} | {run['other_cpu']:.0f} "
                f"| {'yes' if run['passed'] else 'no'} |"
            )
    lines += passthrough_table(results.get("passthrough"))
    lines += [
        "",
        'CPU columns are % of one core (the machine has 200 %). "Other load" is what the rest '
        "of the machine used during the window: this machine is shared, so a run during which "
        f"other work took more than {OTHER_LOAD_MAX:.0f} % was repeated (up to 3 times, the "
        "quietest kept); runs with much other load understate what a system can do.",
        "",
        "Raw numbers: `bench/results/pipeline.json`.",
        "",
    ]
    return "\n".join(lines)


def _system_result(runs: list[Run], best: int, ceiling: float) -> dict[str, Any]:
    final = next((r for r in reversed(runs) if r.cameras == best and r.passed), None)
    cpu = sum(final.worker_cpu) / len(final.worker_cpu) if final else float("nan")
    fps = sum(final.fps) / len(final.fps) if final else float("nan")
    return {
        "best": best,
        "ratio": best / ceiling if ceiling else 0.0,
        "cpu_per_camera": cpu,
        "ms_per_frame": 10 * cpu / fps if final else float("nan"),
        "pss_mib": (
            sum(final.worker_pss_mib) / len(final.worker_pss_mib)
            if final and final.worker_pss_mib
            else float("nan")
        ),
        "best_fps": min(final.fps) if final else 0.0,
        "server_cpu": final.server_cpu if final else float("nan"),
        "supervisor_cpu": final.supervisor_cpu if final else float("nan"),
    }


def _setting(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s probes, 20 s confirmation")
    parser.add_argument("--only", choices=sorted(SIZES), help="one resolution")
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=("vms", "ffmpeg", "passthrough"),
        default=["vms", "ffmpeg", "passthrough"],
    )
    parser.add_argument(
        "--passthrough-counts",
        type=int,
        nargs="+",
        default=[20, 40, 60, 80],
        help="1080p passthrough cameras tried, in order, until one count fails",
    )
    parser.add_argument(
        "--start", type=float, default=0.6, help="first N probed, as a share of the ceiling"
    )
    parser.add_argument(
        "--set", nargs="*", default=[], help="WorkerConfig overrides for the pipeline, k=v"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="re-render the .md from the last .json"
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(RESULTS.with_suffix(".json").read_text())
        meta = saved.pop("meta")
        RESULTS.write_text(report(meta, saved, _notes()))
        print(f"wrote {RESULTS}")
        return 0
    problem = gst_problem()
    if problem is not None or shutil.which("ffmpeg") is None:
        print(
            f"bench/pipeline.py needs ffmpeg and GStreamer: {problem or APT_HINT}", file=sys.stderr
        )
        return 1
    if not SOURCE.is_file():
        print(f"no sample footage at {SOURCE}", file=sys.stderr)
        return 1
    overrides = dict(_setting(t) for t in args.set) or None
    probe_s, confirm_s = (10.0, 20.0) if args.quick else (20.0, 60.0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vms-bench-clips-") as tmp:
        clips = {
            res: convert(
                SOURCE, Path(tmp) / f"{res}.h264", size=size, fps=FPS, seconds=CLIP_SECONDS
            )
            for res, size in SIZES.items()
            if args.only in (None, res) and {"vms", "ffmpeg"} & set(args.systems)
        }
        if clips:
            with RtspServerProcess(
                {f"/{res}": f"{clip}@{FPS}" for res, clip in clips.items()}
            ) as server:
                for res, clip in clips.items():
                    print(f"{res}: reference ...", flush=True)
                    ref = reference_fps(clip, mask=False, rounds=3)
                    ref_mask = reference_fps(clip, mask=True, rounds=3)
                    ceiling = 2 * ref / FPS
                    print(f"  decode+encode {ref:.0f} fps, +mask {ref_mask:.0f} fps", flush=True)
                    start = round(args.start * ceiling)
                    results[res] = {
                        "ref_fps": ref,
                        "ref_mask_fps": ref_mask,
                        "ref_cameras": ceiling,
                        "ref_cpu": 100 * FPS / ref,
                        "runs": [],
                    }

                    def vms(n: int, seconds: float, warmup: float, res: str = res) -> Run:
                        return run_pipeline(server, res, n, seconds, warmup, overrides)

                    def peer(n: int, seconds: float, warmup: float, res: str = res) -> Run:
                        return run_ffmpeg(server, res, n, seconds, warmup)

                    for system, runner in (("vms", vms), ("ffmpeg", peer)):
                        if system not in args.systems:
                            continue
                        runs, best = largest_n(runner, start, int(ceiling), probe_s, confirm_s)
                        results[res][system] = _system_result(runs, best, ceiling)
                        results[res]["runs"] += [asdict(r) for r in runs]
        if "passthrough" in args.systems and args.only in (None, "1080p"):
            results["passthrough"] = passthrough_runs(
                Path(tmp), args.passthrough_counts, 20.0 if args.quick else 60.0
            )
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "args": " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "versions": _versions(),
        "overrides": overrides or {},
    }
    if args.only or set(args.systems) != {"vms", "ffmpeg", "passthrough"}:
        print(json.dumps({"meta": meta, **results}, indent=2))
        return 0
    RESULTS.with_suffix(".json").write_text(json.dumps({"meta": meta, **results}, indent=2))
    RESULTS.write_text(report(meta, results, _notes()))
    print(f"wrote {RESULTS}")
    return 0


def _notes() -> str:
    return PROFILE_NOTES.read_text() if PROFILE_NOTES.is_file() else ""


def _versions() -> str:
    import cv2
    import numpy

    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    return (
        f"PyAV {av.__version__} (FFmpeg libavcodec {av.library_versions['libavcodec']}), "
        f"numpy {numpy.__version__}, OpenCV {cv2.__version__}; "
        f"peer: {ffmpeg.splitlines()[0] if ffmpeg else 'ffmpeg ?'}"
    )


if __name__ == "__main__":
    sys.exit(main())
