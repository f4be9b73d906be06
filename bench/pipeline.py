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
import json
import multiprocessing
import os
import platform
import shutil
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
        {"type": "facade_strip", "action": "keep", "facade": [[0.0, 0.0], [14.0, 0.0]],
         "width_m": 2.0}
    ],
}  # fmt: skip


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


def _register(db_url: str, urls: list[str], key: str) -> None:
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
    with session_scope(make_sessionmaker(engine)) as session:
        org = accounts.create_organisation(session=session, actor=None, name="Bench")
        user = accounts.create_user(
            session=session,
            actor=None,
            email="bench@vms.local",
            organisation_id=org.id,
            role=Role.facility_manager,
        )
        actor = principal_for(session, user)
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
        for n, url in enumerate(urls):
            registry_service.create_camera(
                session=session,
                actor=actor,
                box=SecretBox(key.encode()),
                file_roots=(),
                data=CameraCreate.model_validate(
                    {
                        "name": f"Bench {n}",
                        "purpose": "benchmark",
                        "purpose_category": "other",
                        "mode": "live_and_recording",
                        "retention_hours": 24,
                        "legal_basis_id": basis.id,
                        "source": {"kind": "rtsp", "url": url},
                        "mask_plan": PLAN,
                    }
                ),
            )
    engine.dispose()


def run_pipeline(
    server: RtspServerProcess,
    resolution: str,
    n: int,
    seconds: float,
    warmup: float,
    overrides: dict[str, Any] | None = None,
) -> Run:
    from vms.core.config import PipelineSettings, Settings, generate_key
    from vms.pipeline.supervisor import PipelineSupervisor

    run = Run(resolution, n, seconds)
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
        finally:
            sup.stop()
    return run


def measured(
    server: RtspServerProcess, resolution: str, n: int, seconds: float, warmup: float
) -> Run:
    """A run, repeated (up to 3 times) while other work on this shared machine took more than
    OTHER_LOAD_MAX of a core: the result should describe the pipeline, not the neighbours."""
    best: Run | None = None
    for _ in range(3):
        run = run_pipeline(server, resolution, n, seconds, warmup)
        if best is None or run.other_cpu < best.other_cpu:
            best = run
        if run.other_cpu <= OTHER_LOAD_MAX:
            break
        print(f"  (other load {run.other_cpu:.0f}% during N={n}: measuring again)", flush=True)
    assert best is not None
    return best


def largest_n(
    server: RtspServerProcess, resolution: str, ceiling: int, probe_s: float, confirm_s: float
) -> tuple[list[Run], int]:
    """Probe N = 1, 2, ... briefly until a run fails, then confirm the best with a long run."""
    runs: list[Run] = []
    best = 0
    for n in range(1, ceiling + 2):
        run = measured(server, resolution, n, probe_s, warmup=3.0)
        runs.append(run)
        _log(run, "probe")
        if not run.passed:
            break
        best = n
    while best > 0:
        run = measured(server, resolution, best, confirm_s, warmup=5.0)
        runs.append(run)
        _log(run, "confirm")
        if run.passed:
            break
        best -= 1
    return runs, best


def _log(run: Run, kind: str) -> None:
    print(
        f"  {kind} {run.resolution} N={run.cameras} {run.seconds:.0f}s: fps min "
        f"{min(run.fps):.2f}, worker CPU {sum(run.worker_cpu) / len(run.worker_cpu):.0f}%, "
        f"drops {sum(run.dropped)}, other load {run.other_cpu:.0f}%, "
        f"{'PASS' if run.passed else 'FAIL'}",
        flush=True,
    )


# -- report --------------------------------------------------------------------------------------


def report(meta: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [
        "# Pipeline benchmark",
        "",
        f"Generated {meta['when']} by `python bench/pipeline.py{meta['args']}`.",
        "",
        f"- machine: {meta['machine']}",
        f"- PyAV {av.__version__}; encoder libx264 preset {PRESET}, crf {CRF}, 1 thread per camera;"
        " 10 s MP4 segments, fsynced, hashed, indexed in SQLite",
        f"- cameras: N clients of the GStreamer RTSP server on this machine, one {FPS} fps "
        f"stream per resolution ({SOURCE.name} scaled up, {CLIP_SECONDS} s loop); mask: the "
        "facade plan of bench/masking.py (pixelate, ~10 % of the frame kept)",
        f"- full frame rate: every camera delivered >= {FULL_RATE:.0%} of {FPS} fps through the "
        "whole window, no worker restarted",
        "- reference: decode + encode of the same clip with the same encoder settings, one process "
        "pinned to one core (fps by CPU time, median of 3); `2 x fps / 25` is how many cameras two "
        "cores could carry if nothing else ran",
        "",
        "## Summary",
        "",
        "| | 720p | 1080p |",
        "|---|---:|---:|",
    ]
    r720, r1080 = results["720p"], results["1080p"]

    def row(label: str, key: str, fmt: str = "{}") -> str:
        return f"| {label} | {fmt.format(r720[key])} | {fmt.format(r1080[key])} |"

    lines += [
        row("decode + encode, one core (fps)", "ref_fps", "{:.0f}"),
        row("decode + mask + encode, one core (fps)", "ref_mask_fps", "{:.0f}"),
        row("cameras two cores carry at decode + encode speed", "ref_cameras", "{:.1f}"),
        row("**largest N at full frame rate for 60 s (pipeline)**", "best", "**{}**"),
        row("ratio to the decode + encode ceiling", "ratio", "{:.2f}"),
        row("CPU per camera in the pipeline (% of a core)", "cpu_per_camera", "{:.0f}"),
        row("CPU per camera at decode + encode speed (% of a core)", "ref_cpu", "{:.0f}"),
        row("sustained fps per camera at that N (min over cameras)", "best_fps", "{:.2f}"),
        "",
        "## Runs",
        "",
        "| resolution | N | window | fps per camera (min / mean) | drops | worker CPU % (mean) "
        "| RTSP server CPU % | API process CPU % | other load CPU % | full rate |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for res in ("720p", "1080p"):
        for run in results[res]["runs"]:
            fps = run["fps"]
            cpu = run["worker_cpu"]
            lines.append(
                f"| {res} | {run['cameras']} | {run['seconds']:.0f} s | {min(fps):.2f} / "
                f"{sum(fps) / len(fps):.2f} | {sum(run['dropped'])} | {sum(cpu) / len(cpu):.0f} "
                f"| {run['server_cpu']:.0f} | {run['supervisor_cpu']:.0f} | {run['other_cpu']:.0f} "
                f"| {'yes' if run['passed'] else 'no'} |"
            )
    lines += [
        "",
        'CPU columns are % of one core (the machine has 200 %). "Other load" is what the rest '
        "of the machine used during the window: this machine is shared, so a run during which "
        f"other work took more than {OTHER_LOAD_MAX:.0f} % was repeated (up to 3 times, the "
        "quietest kept); runs with much other load understate what the pipeline can do.",
        "",
        "Why N stays below the ceiling: the cameras fail on latency before the CPU is full (at "
        "the first failing N the machine was about 155-165 % busy). Every camera gets each frame "
        "at the same instant from the shared server, so the work arrives in bursts, and a "
        "worker whose mask/encode thread is late by more than its 2-frame queue (80 ms) drops a "
        "frame. A 5-frame queue carried 13 cameras at 720p in a 20 s probe (see docs/pipeline.md).",
        "",
        "Raw numbers: `bench/results/pipeline.json`.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s probes, 20 s confirmation")
    parser.add_argument("--only", choices=sorted(SIZES), help="one resolution")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render the .md from the last .json"
    )
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(RESULTS.with_suffix(".json").read_text())
        meta = saved.pop("meta")
        RESULTS.write_text(report(meta, saved))
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
    probe_s, confirm_s = (10.0, 20.0) if args.quick else (20.0, 60.0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vms-bench-clips-") as tmp:
        clips = {
            res: convert(
                SOURCE, Path(tmp) / f"{res}.h264", size=size, fps=FPS, seconds=CLIP_SECONDS
            )
            for res, size in SIZES.items()
            if args.only in (None, res)
        }
        with RtspServerProcess(
            {f"/{res}": f"{clip}@{FPS}" for res, clip in clips.items()}
        ) as server:
            for res, clip in clips.items():
                print(f"{res}: reference ...", flush=True)
                ref = reference_fps(clip, mask=False, rounds=3)
                ref_mask = reference_fps(clip, mask=True, rounds=3)
                ceiling = 2 * ref / FPS
                print(f"  decode+encode {ref:.0f} fps, +mask {ref_mask:.0f} fps", flush=True)
                runs, best = largest_n(server, res, int(ceiling), probe_s, confirm_s)
                final = next((r for r in reversed(runs) if r.cameras == best and r.passed), None)
                results[res] = {
                    "ref_fps": ref,
                    "ref_mask_fps": ref_mask,
                    "ref_cameras": ceiling,
                    "ref_cpu": 100 * FPS / ref,
                    "best": best,
                    "ratio": best / ceiling if ceiling else 0.0,
                    "cpu_per_camera": (
                        sum(final.worker_cpu) / len(final.worker_cpu) if final else float("nan")
                    ),
                    "best_fps": min(final.fps) if final else 0.0,
                    "runs": [asdict(r) for r in runs],
                }
    if args.only:
        print(json.dumps(results, indent=2))
        return 0
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "args": " --quick" if args.quick else "",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
    }
    RESULTS.with_suffix(".json").write_text(json.dumps({"meta": meta, **results}, indent=2))
    RESULTS.write_text(report(meta, results))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
