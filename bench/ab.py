"""A/B: the same cameras through two or more pipeline variants, interleaved, in one session.

    .venv/bin/python bench/ab.py --res 720p --cameras 4 --rounds 3 \\
        --variant base=/tmp/base-tree --variant batch4=.:frame_batch=4

A variant is `name=TREE[:key=value,...]`: TREE is a source tree of the project (`.` is this
one; an older commit exported with `git archive` measures code changes) and the optional
WorkerConfig overrides. Every round runs each variant once, in the same order, against one RTSP
server, so slow drifts of the shared machine's load hit all variants alike. Reported per variant
(median over rounds): worker CPU per delivered frame (ms), the same as % of a core at 25 fps,
min fps over cameras, dropped frames, and the other load on the machine during the window.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class _Server:
    """What `bench.pipeline.run_pipeline` needs of an RTSP server started elsewhere."""

    def __init__(self, base: str, pid: int) -> None:
        self.base, self.pid = base, pid

    def url(self, mount: str) -> str:
        return self.base + mount


def _single(spec: dict[str, Any]) -> int:
    """One run in this process (whose sys.path starts with the variant's tree)."""
    from bench.pipeline import run_pipeline

    server = _Server(spec["base"], spec["pid"])
    run = run_pipeline(
        server,  # type: ignore[arg-type]
        spec["res"],
        spec["cameras"],
        spec["seconds"],
        spec["warmup"],
        spec["overrides"] or None,
    )
    print("RESULT " + json.dumps(asdict(run)), flush=True)
    return 0


def _parse_variant(text: str) -> tuple[str, Path, dict[str, Any]]:
    name, _, rest = text.partition("=")
    tree, _, over = rest.partition(":")
    overrides: dict[str, Any] = {}
    for item in filter(None, over.split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, Path(tree or ".").resolve(), overrides


def _run_variant(tree: Path, spec: dict[str, Any]) -> dict[str, Any]:
    harness = Path(tempfile.gettempdir()) / "vms-ab-harness"
    harness.mkdir(exist_ok=True)
    # The harness (this file and bench/pipeline.py of this tree) runs against the variant's code.
    bench = harness / "bench"
    bench.mkdir(exist_ok=True)
    for name in ("__init__.py", "pipeline.py", "ab.py"):
        (bench / name).write_bytes((REPO / "bench" / name).read_bytes())
    env = dict(os.environ, PYTHONPATH=f"{harness}{os.pathsep}{tree}")
    code = (
        "import sys, json; sys.path[:0] = [sys.argv[2], sys.argv[1]]; "
        "from bench.ab import _single; sys.exit(_single(json.loads(sys.argv[3])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tree), str(harness), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        timeout=600,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    raise RuntimeError(f"variant run failed: {proc.stderr[-3000:]}")


def _summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    def per_frame(r: dict[str, Any]) -> float:
        cpu = sum(r["worker_cpu"]) / len(r["worker_cpu"])  # % of a core per camera
        fps = sum(r["fps"]) / len(r["fps"])
        return 10 * cpu / fps if fps else float("nan")  # ms per frame

    ms = statistics.median(per_frame(r) for r in runs)
    return {
        "ms_per_frame": ms,
        "core_pct_at_25fps": ms * 25 / 10,
        "min_fps": statistics.median(min(r["fps"]) for r in runs),
        "dropped": statistics.median(sum(r["dropped"]) for r in runs),
        "other_load": statistics.median(r["other_cpu"] for r in runs),
        "server_cpu": statistics.median(r["server_cpu"] for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--res", default="720p")
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from bench.pipeline import CLIP_SECONDS, FPS, SIZES, SOURCE
    from sample_streams import RtspServerProcess
    from sample_streams.convert import convert

    variants = [_parse_variant(v) for v in args.variant]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="vms-ab-") as tmp:
        clip = convert(
            SOURCE,
            Path(tmp) / f"{args.res}.h264",
            size=SIZES[args.res],
            fps=FPS,
            seconds=CLIP_SECONDS,
        )
        with RtspServerProcess({f"/{args.res}": f"{clip}@{FPS}"}) as server:
            base = f"rtsp://{server.host}:{server.port}"
            for rnd in range(args.rounds):
                for name, tree, overrides in variants:
                    spec = {
                        "base": base,
                        "pid": server.pid,
                        "res": args.res,
                        "cameras": args.cameras,
                        "seconds": args.seconds,
                        "warmup": args.warmup,
                        "overrides": overrides,
                    }
                    run = _run_variant(tree, spec)
                    results[name].append(run)
                    s = _summary([run])
                    print(
                        f"  round {rnd + 1} {name}: {s['ms_per_frame']:.2f} ms/frame, "
                        f"min fps {s['min_fps']:.2f}, drops {s['dropped']:.0f}, "
                        f"other load {s['other_load']:.0f}%",
                        flush=True,
                    )
    print(
        f"\n{args.res}, {args.cameras} camera(s), {args.seconds:.0f} s windows, median of "
        f"{args.rounds} interleaved rounds\n"
    )
    print(
        "| variant | CPU per frame (ms) | % of a core at 25 fps | vs first | min fps | drops "
        "| other load % |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    first = None
    for name, runs in results.items():
        s = _summary(runs)
        first = first or s["ms_per_frame"]
        print(
            f"| {name} | {s['ms_per_frame']:.2f} | {s['core_pct_at_25fps']:.1f} | "
            f"{s['ms_per_frame'] / first:.2f} | {s['min_fps']:.2f} | {s['dropped']:.0f} | "
            f"{s['other_load']:.0f} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "results": results},
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
