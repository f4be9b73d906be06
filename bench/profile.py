"""Where a camera worker's CPU goes, measured on running workers under the bench's conditions.

    .venv/bin/python bench/profile.py --res 720p --cameras 1 6          # prints a table
    .venv/bin/python bench/profile.py --res 1080p --cameras 1 4 --json out.json
    .venv/bin/python bench/profile.py --res 720p --cameras 1 --set frame_queue=2 decoder_threads=0
    .venv/bin/python bench/profile.py --res 720p --cameras 1 --pyspy      # + Python-level split

N cameras pull the bench stream (bench/pipeline.py: same clip, same RTSP server, same facade
plan, same supervisor and worker processes). After a warm-up, for a window of `--seconds`:

- `perf record -e cpu-clock` samples every worker (all threads, user and kernel) at `--freq`
  Hz; each sample is one 1/freq s slice of CPU time, so the shares are CPU time, not wall
  time, and idle threads cost nothing. Samples are put in categories by the library (and for
  libc/kernel the symbol) they hit and by thread: the reader thread's FFmpeg time is demux and
  decode, the main thread's is encode and mux, x264 is encode, OpenCV and numpy are masking,
  libpython and PyAV's Cython modules are the Python layer, and so on.
- every worker's CPU time is also read per thread from /proc (exact, cross-check).
- with `--pyspy`, up to `--profiled` workers are sampled with py-spy as well, for the Python
  line that spent the time (py-spy samples wall time and cannot always tell a thread blocked in
  FFmpeg's poll from one working, so its shares are weighted by the thread's CPU time).
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import linecache
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pipeline import (  # noqa: E402
    CLIP_SECONDS,
    FPS,
    SIZES,
    SOURCE,
    machine_busy_seconds,
    pipeline_running,
)
from sample_streams import RtspServerProcess  # noqa: E402
from sample_streams.convert import convert  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

# (category, needles): a Python frame belongs to the first category one of whose needles occurs
# in the frame ("function (path:line)") or in the text of its source line. Frames are tried
# innermost first, so the line that calls into FFmpeg/x264/OpenCV decides, not its callers.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("live JPEG", ("_publish_jpeg", "imencode")),
    ("mask: copy before writing (make_writable)", ("make_writable",)),
    ("mask: keep-region copy", ("masking/inplace.py",)),
    ("mask: pixelate/blur", ("masking/anonymise.py",)),
    ("mask: plane views, checks", ("masking/",)),
    ("record: resize (profile)", ("_recorded_size",)),
    ("mux + write (MP4)", (".mux(",)),
    ("encode (x264)", (".encode(frame)", "stream.encode(")),
    ("recorder (segment logic)", ("vms/pipeline/recorder.py",)),
    ("decode (H.264)", (".decode()",)),
    ("demux (RTSP/RTP, TCP)", ("next(demux)",)),
    ("convert pixel format", ("reformat(",)),
    ("frame hand-off (queue, locks)", ("queue.py", "Reader._frame", "put_nowait", "frames.get(")),
    (
        "housekeeping + status",
        ("_housekeeping", "_report", "_drain_control", "_camera_state", "_recording", "_feed"),
    ),
    ("finalise segment (trailer, fsync, hash, index)", ("_finalise", "_index_waiting")),
]
# Native frames (with --native): what they show that Python frames cannot.
NATIVE: list[tuple[str, tuple[str, ...]]] = [
    ("GC", ("gc_collect", "collect_generations", "gc_collect_main")),
]
WAIT_LEAVES = (
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "PyThread_acquire_lock_timed",
    "sem_wait",
    "sem_timedwait",
    "sem_clockwait",
    "poll (libc",
    "select (libc",
    "epoll_wait",
    "nanosleep",
)
LOCK_WAITS = ("PyThread_acquire_lock_timed", "sem_wait", "sem_timedwait", "sem_clockwait")
PYTHON_WAITS = ("Condition.wait", "Event.wait", "sleep", "Queue.get", "_poll (multiprocessing")


@functools.cache
def _line_text(path: str, line: int) -> str:
    for root in (REPO, *(Path(p) for p in sys.path if p)):
        candidate = root / path
        if candidate.is_file():
            try:
                return linecache.getline(str(candidate), line).strip()
            except OSError:
                return ""
    return ""


def _label(frame: str) -> str:
    """A Python frame with its source line: 'f (a/b.py:12) | text'."""
    if ".py:" not in frame or not frame.endswith(")"):
        return frame
    where = frame[frame.rfind("(") + 1 : -1]
    path, _, line = where.rpartition(":")
    return f"{frame} | {_line_text(path, int(line))}" if line.isdigit() else frame


@dataclass
class ThreadCpu:
    name: str
    user_s: float = 0.0
    sys_s: float = 0.0


@dataclass
class WorkerProfile:
    pid: int
    threads: dict[str, ThreadCpu] = field(default_factory=dict)  # by thread name
    samples: dict[str, dict[str, int]] = field(default_factory=dict)  # py-spy: thread -> cat -> n
    perf: dict[str, float] = field(default_factory=dict)  # perf: category -> CPU s per s
    rss_mib: float = 0.0
    pss_mib: float = 0.0
    uss_mib: float = 0.0


@dataclass
class Profile:
    resolution: str
    cameras: int
    seconds: float
    overrides: dict[str, Any]
    machine_busy_pct: float = 0.0
    sampler_cpu_pct: float = 0.0  # py-spy itself, % of one core
    frames_out: list[float] = field(default_factory=list)  # per camera, frames per second
    fps: list[float] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    workers: list[WorkerProfile] = field(default_factory=list)


def _thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task)] = (int(fields[11]) / TICK, int(fields[12]) / TICK)
    return out


def _memory(pid: int) -> tuple[float, float, float]:
    """RSS, PSS, USS (private) of a process in MiB (smaps_rollup)."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                values[parts[0][:-1]] = int(parts[1])
    uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return values.get("Rss", 0) / 1024, values.get("Pss", 0) / 1024, uss / 1024


def _thread_names(spy: str, pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name (py-spy dump)."""
    names: dict[int, str] = {}
    try:
        text = subprocess.run(
            [spy, "dump", "--pid", str(pid), "--nonblocking"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except subprocess.TimeoutExpired:
        return names
    for line in text.splitlines():
        if line.startswith("Thread "):
            tid = line.split()[1]
            name = line.rsplit('"', 2)[-2] if line.count('"') >= 2 else tid
            if tid.isdigit():
                names[int(tid)] = name
    return names


def _base_name(name: str) -> str:
    """reader-17 -> reader, finalise_0 -> finalise."""
    for prefix in ("reader", "finalise"):
        if name.startswith(prefix):
            return prefix
    return name


def classify(frames: list[str]) -> str:
    """One sample (outermost frame first) -> its category, or "(waiting...)" if it blocked."""
    tail = ";".join(frames[-6:])
    if any(w in tail for w in WAIT_LEAVES):
        python = [f for f in frames if ".py:" in f]
        gil = "pthread_cond_timedwait" in tail and not any(w in tail for w in LOCK_WAITS)
        if gil and (not python or not any(w in python[-1] for w in PYTHON_WAITS)):
            return "(waiting: GIL)"
        return "(waiting)"
    for category, needles in NATIVE:
        if any(n in f for f in frames for n in needles):
            return category
    for frame in reversed(frames):
        if ".py:" not in frame:
            continue
        label = _label(frame)
        for category, needles in CATEGORIES:
            if any(n in label for n in needles):
                return category
    return "Python (loop, other)"


def parse_raw(path: Path) -> dict[str, dict[str, int]]:
    """py-spy raw output (--threads) -> thread name -> category -> samples."""
    out: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        head = frames[0]  # "thread (1234): name"
        name = _base_name(head.split(": ", 1)[1]) if ": " in head else head
        out[name][classify(frames[1:])] += int(count)
    return {k: dict(v) for k, v in out.items()}


PERF_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("encode (x264)", ("libx264",)),
    ("decode (H.264, libavcodec)", ("libavcodec",)),
    ("pixel format conversion (swscale)", ("libswscale",)),
    ("mask (OpenCV)", ("cv2",)),
    ("mask (numpy)", ("_multiarray_umath", "numpy")),
    ("segment hash (SHA-256)", ("libcrypto",)),
    ("footage index (SQLite)", ("libsqlite3", "_sqlite3")),
    ("Python interpreter + PyAV glue", ("libpython", ".abi3.so", "cpython-311", "python3.11")),
    ("FFmpeg utilities (libavutil)", ("libavutil",)),
]
LIBC_COPY = ("memmove", "memcpy", "memset")
LIBC_ALLOC = ("malloc", "free", "_int_", "unlink_chunk", "memalign", "cfree", "realloc")
KERNEL_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("kernel: scheduling, wake-ups", ("finish_task_switch", "schedule", "futex", "try_to_wake")),
    (
        "kernel: network (TCP)",
        ("tcp_", "sock_", "skb", "ip_", "_copy_to_iter", "__sys_recv", "inet_", "bbr_"),
    ),
    (
        "kernel: page faults",
        (
            "page_fault",
            "clear_page",
            "do_anonymous",
            "handle_mm_fault",
            "do_fault",
            "filemap_",
            "__handle_mm",
        ),
    ),
    ("kernel: files (fsync, writes)", ("ext4", "jbd2", "blk_", "iomap", "vfs_", "fsync")),
]


def perf_category(role: str, dso: str, sym: str) -> str:
    """One perf sample (thread role, library, symbol) -> its category."""
    name = dso.rsplit("/", 1)[-1]
    if "kallsyms" in name or name.startswith("[kernel"):
        for category, needles in KERNEL_GROUPS:
            if any(n in sym for n in needles):
                return category
        return "kernel: other (syscalls, interrupts)"
    if "libavformat" in name:
        return "demux (RTSP/RTP over TCP)" if role == "reader" else "mux (MP4)"
    if name.startswith("libc.so") or name.startswith("libc-"):
        if any(n in sym for n in LIBC_COPY):
            return "memory copies (libc)"
        if any(n in sym for n in LIBC_ALLOC):
            return "malloc/free (libc)"
        return "libc: other (locks, syscalls)"
    for category, needles in PERF_GROUPS:
        if any(n in name for n in needles):
            return category
    return f"other ({name})"


def _perf_script(data: Path) -> list[tuple[int, str, str]]:
    text = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "tid,ip,sym,dso"],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    out = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        rest = parts[2]
        sym, _, dso = rest.rpartition(" (")
        out.append((int(parts[0]), sym.strip(), dso.rstrip(")")))
    return out


def _roles(pid: int, names: dict[int, str], cpu: dict[int, tuple[float, float]]) -> dict[int, str]:
    """Thread id -> role (MainThread, reader, finalise, other), from py-spy's names if known,
    else: the process's own thread is the main one and the busiest other one the reader."""
    roles = {tid: _base_name(name) for tid, name in names.items()}
    if not roles:
        roles[pid] = "MainThread"
        others = sorted((t for t in cpu if t != pid), key=lambda t: -sum(cpu[t]))
        if others:
            roles[others[0]] = "reader"
    return roles


def profile(
    server: RtspServerProcess,
    resolution: str,
    n: int,
    seconds: float,
    warmup: float,
    profiled: int,
    rate: int,
    overrides: dict[str, Any],
    spy: str | None,
    native: bool = False,
    freq: int = 999,
) -> Profile:
    result = Profile(resolution, n, seconds, overrides)
    use_perf = shutil.which("perf") is not None
    with (
        pipeline_running(server, resolution, n, overrides or None) as (sup, ids),
        tempfile.TemporaryDirectory(prefix="vms-profile-") as tmp,
    ):
        time.sleep(warmup)
        pids = [p for p in (sup.worker_pid(i) for i in ids) if p]
        names = {pid: _thread_names(spy, pid) if spy else {} for pid in pids}
        before = {i: sup.status(i) for i in ids}
        cpu0 = {pid: _thread_cpu(pid) for pid in pids}
        busy0, t0 = machine_busy_seconds(), time.monotonic()
        recorder = None
        data = Path(tmp) / "perf.data"
        if use_perf:
            recorder = subprocess.Popen(
                [
                    "perf",
                    "record",
                    "-q",
                    "-e",
                    "cpu-clock",
                    "-F",
                    str(freq),
                    "-p",
                    ",".join(map(str, pids)),
                    "-o",
                    str(data),
                    "--",
                    "sleep",
                    str(seconds),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        spies = []
        for pid in pids[:profiled] if spy else []:
            assert spy is not None
            out = Path(tmp) / f"{pid}.txt"
            cmd = [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "--threads",
                "-o",
                str(out),
            ]
            if native:
                cmd.insert(-2, "--native")
            spies.append(
                (
                    pid,
                    out,
                    subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                )
            )
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpu1 = {pid: _thread_cpu(pid) for pid in pids}
        result.machine_busy_pct = 100 * (machine_busy_seconds() - busy0) / elapsed
        after = {i: sup.status(i) for i in ids}
        roles: dict[int, tuple[int, str]] = {}
        for pid in pids:
            wp = WorkerProfile(pid)
            delta = {
                tid: (
                    u1 - cpu0[pid].get(tid, (0.0, 0.0))[0],
                    s1 - cpu0[pid].get(tid, (0.0, 0.0))[1],
                )
                for tid, (u1, s1) in cpu1[pid].items()
            }
            for tid, role in _roles(pid, names[pid], delta).items():
                roles[tid] = (pid, role)
            for tid, (du, ds) in delta.items():
                name = roles.get(tid, (pid, "other"))[1]
                tc = wp.threads.setdefault(name, ThreadCpu(name))
                tc.user_s += du / elapsed
                tc.sys_s += ds / elapsed
            wp.rss_mib, wp.pss_mib, wp.uss_mib = _memory(pid)
            result.workers.append(wp)
        if recorder is not None:
            recorder.wait(timeout=120)
            by_pid = {w.pid: w for w in result.workers}
            tids = {tid for pid in pids for tid in cpu1[pid]}
            owner = {tid: pid for pid in pids for tid in cpu1[pid]}
            for tid, sym, dso in _perf_script(data):
                if tid not in tids:
                    continue
                pid, role = roles.get(tid, (owner[tid], "other"))
                cat = perf_category(role, dso, sym)
                w = by_pid[pid]
                w.perf[cat] = w.perf.get(cat, 0.0) + 1.0 / freq / seconds
        for pid, out, proc in spies:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = status
            result.sampler_cpu_pct += 100 * (usage.ru_utime + usage.ru_stime) / elapsed
            if out.exists():
                next(w for w in result.workers if w.pid == pid).samples = parse_raw(out)
        for i in ids:
            a, b = after[i], before[i]
            if a.updated_at and b.updated_at:
                span = (a.updated_at - b.updated_at).total_seconds()
                result.fps.append(round((a.frames_out - b.frames_out) / span, 2))
            result.dropped.append(a.dropped_frames - b.dropped_frames)
    return result


# -- the table -----------------------------------------------------------------------------------


def perf_breakdown(p: Profile) -> dict[str, float]:
    """% of one core per camera by perf category (mean over workers)."""
    totals: dict[str, float] = collections.defaultdict(float)
    for w in p.workers:
        for cat, v in w.perf.items():
            totals[cat] += 100 * v / len(p.workers)
    return dict(totals)


def spy_breakdown(p: Profile) -> dict[str, float]:
    """% of one core per camera by py-spy category: each thread's CPU time (from /proc) split
    over its running samples (mean over the sampled workers)."""
    totals: dict[str, float] = collections.defaultdict(float)
    sampled = [w for w in p.workers if w.samples]
    for w in sampled:
        for name, tc in w.threads.items():
            cpu = 100 * (tc.user_s + tc.sys_s)
            counts = w.samples.get(name, {})
            running = {k: v for k, v in counts.items() if not k.startswith("(")}
            n = sum(running.values())
            if not n:
                totals[f"unsampled thread ({name})"] += cpu
                continue
            for cat, v in running.items():
                totals[cat] += cpu * v / n
    return {k: v / len(sampled) for k, v in totals.items()} if sampled else {}


def per_thread(p: Profile) -> dict[str, tuple[float, float]]:
    """Mean (user, sys) % of a core per camera, by thread, over all workers."""
    acc: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for w in p.workers:
        for name, tc in w.threads.items():
            acc[name][0] += 100 * tc.user_s
            acc[name][1] += 100 * tc.sys_s
    return {k: (u / len(p.workers), s / len(p.workers)) for k, (u, s) in acc.items()}


def _table(heads: list[str], tables: list[dict[str, float]], unit: str) -> list[str]:
    cats: list[str] = []
    for t in tables:
        for k in sorted(t, key=lambda k: -t[k]):
            if k not in cats:
                cats.append(k)
    lines = [f"| {unit} | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for c in cats:
        lines.append(f"| {c} | " + " | ".join(f"{t.get(c, 0.0):.1f}" for t in tables) + " |")
    lines.append("| **total** | " + " | ".join(f"**{sum(t.values()):.1f}**" for t in tables) + " |")
    return lines


def render(profiles: list[Profile], labels: list[str] | None = None) -> str:
    heads = labels or [f"{p.resolution} N={p.cameras}" for p in profiles]
    lines: list[str] = []
    if any(w.perf for p in profiles for w in p.workers):
        lines += _table(heads, [perf_breakdown(p) for p in profiles], "% of one core per camera")
        lines.append(
            "| CPU per delivered frame (ms) | "
            + " | ".join(
                f"{10 * sum(perf_breakdown(p).values()) / (sum(p.fps) / len(p.fps)):.2f}"
                if p.fps
                else "-"
                for p in profiles
            )
            + " |"
        )
    else:
        lines += _table(heads, [spy_breakdown(p) for p in profiles], "% of one core per camera")
    for name in sorted({k for p in profiles for k in per_thread(p)}):
        lines.append(
            f"| /proc: thread {name}, user + sys | "
            + " | ".join(
                "{:.1f} + {:.1f}".format(*per_thread(p).get(name, (0.0, 0.0))) for p in profiles
            )
            + " |"
        )
    lines.append(
        "| fps per camera (min) / drops | "
        + " | ".join(f"{min(p.fps):.2f} / {sum(p.dropped)}" if p.fps else "-" for p in profiles)
        + " |"
    )
    lines.append(
        "| memory per worker: RSS / PSS / USS (MiB) | "
        + " | ".join(
            "{:.0f} / {:.0f} / {:.0f}".format(
                *(
                    sum(getattr(w, a) for w in p.workers) / len(p.workers)
                    for a in ("rss_mib", "pss_mib", "uss_mib")
                )
            )
            for p in profiles
        )
        + " |"
    )
    lines.append(
        "| machine busy during the window (% of one core; 200 = both cores) | "
        + " | ".join(f"{p.machine_busy_pct:.0f}" for p in profiles)
        + " |"
    )
    if any(w.samples for p in profiles for w in p.workers):
        lines += ["", "py-spy (Python line that spent the time; weighted by thread CPU):", ""]
        lines += _table(heads, [spy_breakdown(p) for p in profiles], "% of one core per camera")
    return "\n".join(lines)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--res", choices=sorted(SIZES), default="720p")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--profiled", type=int, default=2, help="workers sampled with py-spy")
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--pyspy", action="store_true", help="also sample with py-spy")
    parser.add_argument("--native", action="store_true", help="py-spy --native (costly)")
    parser.add_argument("--freq", type=int, default=999, help="perf samples per second")
    parser.add_argument("--label", nargs="*", help="column labels, one per camera count")
    parser.add_argument("--set", nargs="*", default=[], help="WorkerConfig overrides k=v")
    parser.add_argument("--json", type=Path, help="append the profiles to this JSON file")
    args = parser.parse_args()
    spy: str | None = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if spy is None or not os.access(spy, os.X_OK):
        spy = None
    if shutil.which("perf") is None and not (args.pyspy and spy):
        print("bench/profile.py needs perf (linux-perf) or py-spy (--pyspy)", file=sys.stderr)
        return 1
    if not args.pyspy:
        args.profiled = 0
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    profiles = []
    with tempfile.TemporaryDirectory(prefix="vms-profile-clip-") as tmp:
        clip = convert(
            SOURCE,
            Path(tmp) / f"{args.res}.h264",
            size=SIZES[args.res],
            fps=FPS,
            seconds=CLIP_SECONDS,
        )
        with RtspServerProcess({f"/{args.res}": f"{clip}@{FPS}"}) as server:
            for n in args.cameras:
                p = profile(
                    server,
                    args.res,
                    n,
                    args.seconds,
                    args.warmup,
                    args.profiled,
                    args.rate,
                    overrides,
                    spy,
                    args.native,
                    args.freq,
                )
                profiles.append(p)
                print(f"  {args.res} N={n}: done (busy {p.machine_busy_pct:.0f}%)", flush=True)
    print(render(profiles, args.label))
    if args.json:
        saved = json.loads(args.json.read_text()) if args.json.exists() else []
        saved += [asdict(p) for p in profiles]
        args.json.write_text(json.dumps(saved, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
