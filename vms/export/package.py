"""Build an export package: per camera one MP4 and a contact sheet, a signed manifest, a signed
checksum list, all in one zip.

No database here: the workflow service gathers what the manifest states into `PackageInput`, and
this module re-hashes the segment files, cuts them, and signs what it wrote.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

import vms
from vms.core.files import file_digest
from vms.core.signing import ALGORITHM, SigningKey
from vms.core.times import iso
from vms.export import manifest as mf
from vms.export import video

logger = logging.getLogger(__name__)

# Holes between segments shorter than this are the normal jitter of segment boundaries.
GAP_TOLERANCE = dt.timedelta(seconds=0.5)
CONTACT_SHEET_SECONDS = 10.0

Progress = Callable[[int], None]  # percent done, 0..100


class PackageError(Exception):
    """The package cannot be built; the message says why (it becomes the request's failure)."""


@dataclass(frozen=True)
class SegmentInput:
    id: int
    path: Path
    start: dt.datetime
    end: dt.datetime
    sha256: str
    size_bytes: int
    mask_plan_hash: str | None = None
    masked_by: str = "vms"


@dataclass(frozen=True)
class CameraInput:
    camera_id: int
    name: str
    registry: dict[str, Any]  # snapshot of the registry record, as it stood at build time
    legal_basis: dict[str, Any] | None
    mask_plans: dict[str, dict[str, Any] | None]  # plan hash -> plan
    segments: Sequence[SegmentInput]
    recorded_gaps: Sequence[dict[str, Any]] = ()  # the footage index's gaps, with reasons
    # Footage in the range that exists but does not leave: quarantined passthrough segments.
    withheld: Sequence[dict[str, Any]] = ()


@dataclass(frozen=True)
class PackageInput:
    export_id: int
    case_number: str
    legal_ground: dict[str, Any]
    reason: str
    requested_by: dict[str, Any]
    approved_by: dict[str, Any] | None
    requested_at: dt.datetime
    approved_at: dt.datetime | None
    start: dt.datetime
    end: dt.datetime
    cameras: Sequence[CameraInput]


@dataclass
class BuiltPackage:
    path: Path
    sha256: str
    size_bytes: int
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def check_segments(camera: CameraInput) -> None:
    """Only footage that is still exactly what was indexed may leave: re-hash every file."""
    for seg in camera.segments:
        if not seg.path.is_file():
            raise PackageError(
                f"segment {seg.id} of camera {camera.camera_id} ({camera.name}) is missing "
                f"from disk: {seg.path.name}"
            )
        digest, _ = file_digest(seg.path)
        if digest != seg.sha256:
            raise PackageError(
                f"segment {seg.id} of camera {camera.camera_id} ({camera.name}) no longer matches "
                f"its indexed SHA-256 (indexed {seg.sha256[:12]}..., now {digest[:12]}...): "
                "refusing to export altered footage"
            )


def coverage_gaps(
    segments: Sequence[SegmentInput],
    start: dt.datetime,
    end: dt.datetime,
    recorded: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Spans of [start, end) no segment covers, with the index's reason where it has one."""
    spans = sorted((max(s.start, start), min(s.end, end)) for s in segments if s.end > start)
    gaps: list[tuple[dt.datetime, dt.datetime]] = []
    cursor = start
    for s_start, s_end in spans:
        if s_start >= end:
            break
        if s_start - cursor > GAP_TOLERANCE:
            gaps.append((cursor, s_start))
        cursor = max(cursor, s_end)
    if end - cursor > GAP_TOLERANCE:
        gaps.append((cursor, end))
    out = []
    for g_start, g_end in gaps:
        reasons = sorted(
            {
                str(r["reason"])
                for r in recorded
                if r["start"] < g_end and (r.get("end") is None or r["end"] > g_start)
            }
        )
        out.append(
            {
                "start": iso(g_start),
                "end": iso(g_end),
                "seconds": round((g_end - g_start).total_seconds(), 3),
                "reasons": reasons,
            }
        )
    return out


def build(
    inp: PackageInput,
    *,
    out_path: Path,
    key: SigningKey,
    contact_sheet_seconds: float = CONTACT_SHEET_SECONDS,
    progress: Progress | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> BuiltPackage:
    """Write the signed package to `out_path` (atomically: a temp name renamed at the end)."""
    report = progress or (lambda _pct: None)
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{inp.export_id}-", dir=out_path.parent))
    warnings: list[str] = []
    try:
        report(1)
        for camera in inp.cameras:
            check_segments(camera)
        report(5)
        files: dict[str, Path] = {}
        cameras_out: list[dict[str, Any]] = []
        n = max(1, len(inp.cameras))
        for i, camera in enumerate(inp.cameras):
            base = 5 + 85 * i // n
            span = 85 // n

            def step(done: int, total: int, base: int = base, span: int = span) -> None:
                report(base + (span * done // max(1, total)) * 8 // 10)

            entry, cam_files, cam_warnings = _camera(inp, camera, work, contact_sheet_seconds, step)
            cameras_out.append(entry)
            files |= cam_files
            warnings += cam_warnings
            report(base + span)
        readme = work / "README.txt"
        readme.write_text(_readme(inp, key), encoding="utf-8")
        files["README.txt"] = readme
        listed: list[dict[str, Any]] = []
        for name, path in files.items():
            digest, size = file_digest(path)
            listed.append({"path": name, "sha256": digest, "size_bytes": size})
        manifest = {
            "format": mf.FORMAT,
            "export_id": inp.export_id,
            "case_number": inp.case_number,
            "legal_ground": inp.legal_ground,
            "reason": inp.reason,
            "requested_by": inp.requested_by,
            "requested_at": iso(inp.requested_at),
            "approved_by": inp.approved_by,
            "approved_at": iso(inp.approved_at),
            "built_at": iso(clock()),
            "range": {"start": iso(inp.start), "end": iso(inp.end)},
            "software": {
                "name": "vms",
                "version": vms.__version__,
                "pyav": av.__version__,
                "ffmpeg": str(getattr(av, "ffmpeg_version_info", "unknown")),
            },
            "signing_key": {"algorithm": ALGORITHM, "fingerprint_sha256": key.fingerprint},
            "cameras": cameras_out,
            "files": listed,
            "warnings": warnings,
        }
        manifest_bytes = mf.canonical_json(manifest)
        sums = mf.sha256sums(manifest_bytes, ((f["path"], f["sha256"]) for f in listed))
        report(95)
        tmp_zip = work / "package.zip"
        with zipfile.ZipFile(tmp_zip, "w") as zf:
            # Text compresses; video and PNG do not, and stored members hash faster on verify.
            deflate = zipfile.ZIP_DEFLATED
            zf.writestr(mf.MANIFEST, manifest_bytes, compress_type=deflate)
            zf.writestr(mf.MANIFEST_SIG, key.sign(manifest_bytes))
            zf.writestr(mf.SUMS, sums, compress_type=deflate)
            zf.writestr(mf.SUMS_SIG, key.sign(sums))
            for name, path in files.items():
                kind = deflate if name.endswith(".txt") else zipfile.ZIP_STORED
                zf.write(path, name, compress_type=kind)
        with tmp_zip.open("rb") as fh:
            os.fsync(fh.fileno())
        digest, size = file_digest(tmp_zip)
        os.replace(tmp_zip, out_path)
        report(100)
        return BuiltPackage(out_path, digest, size, manifest, warnings)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _camera(
    inp: PackageInput,
    camera: CameraInput,
    work: Path,
    contact_sheet_seconds: float,
    step: Callable[[int, int], None],
) -> tuple[dict[str, Any], dict[str, Path], list[str]]:
    folder = f"camera-{camera.camera_id}"
    (work / folder).mkdir()
    mp4 = work / folder / "video.mp4"
    sources = [
        video.SourceSegment(path=s.path, start=s.start)
        for s in sorted(camera.segments, key=lambda s: s.start)
    ]
    try:
        cut = video.cut(sources, inp.start, inp.end, mp4, progress=step)
    except video.CutError as exc:
        raise PackageError(f"camera {camera.camera_id} ({camera.name}): {exc}") from exc
    assert cut.first_frame_at is not None
    sheet = video.contact_sheet(
        mp4,
        first_frame_at=cut.first_frame_at,
        title=f"{inp.case_number} - camera {camera.camera_id} {camera.name} - "
        f"{iso(inp.start)} to {iso(inp.end)}",
        interval_seconds=contact_sheet_seconds,
    )
    png = work / folder / "contact-sheet.png"
    png.write_bytes(sheet.png)
    used_hashes = sorted({s.mask_plan_hash for s in camera.segments if s.mask_plan_hash})
    warnings = [f"camera {camera.camera_id}: {note}" for note in cut.notes]
    if camera.withheld:
        seconds = sum((w["end"] - w["start"]).total_seconds() for w in camera.withheld)
        warnings.append(
            f"camera {camera.camera_id}: {len(camera.withheld)} segment(s), {seconds:.1f}s, in the "
            "range are quarantined (recorded as the camera masked it, not covered by a passing "
            "mask check) and are not in this package; they can be released once re-masked"
        )
    if cut.skipped_undecodable:
        warnings.append(
            f"camera {camera.camera_id}: {cut.skipped_undecodable} frames without a keyframe "
            "could not be decoded and are not in the video"
        )
    entry = {
        "camera_id": camera.camera_id,
        "name": camera.name,
        "registry": camera.registry,
        "legal_basis": camera.legal_basis,
        "mask_plans": [{"hash": h, "plan": camera.mask_plans.get(h)} for h in used_hashes],
        "segments": [
            {
                "id": s.id,
                "file": s.path.name,
                "start": iso(s.start),
                "end": iso(s.end),
                "sha256": s.sha256,
                "size_bytes": s.size_bytes,
                "mask_plan_hash": s.mask_plan_hash,
                "masked_by": s.masked_by,
            }
            for s in sorted(camera.segments, key=lambda s: s.start)
        ],
        "withheld_segments": [
            {
                "id": w["id"],
                "start": iso(w["start"]),
                "end": iso(w["end"]),
                "reason": w["reason"],
            }
            for w in camera.withheld
        ],
        "gaps": coverage_gaps(
            camera.segments,
            inp.start,
            inp.end,
            [*camera.recorded_gaps, *({**w, "reason": w["reason"]} for w in camera.withheld)],
        ),
        "video": {
            "file": f"{folder}/video.mp4",
            "codec": "h264",
            "width": cut.width,
            "height": cut.height,
            "frames": cut.frames,
            "first_frame_at": iso(cut.first_frame_at),
            "last_frame_at": iso(cut.last_frame_at),
            "method": cut.method,
            "remuxed_frames": cut.remuxed_frames,
            "reencoded_frames": cut.reencoded_frames,
            "reencoded_spans": [
                {"first_frame_at": iso(a), "last_frame_at": iso(b)} for a, b in cut.reencoded_spans
            ],
            "time_origin": "video time 0 is first_frame_at; gaps keep their length",
        },
        "contact_sheet": {
            "file": f"{folder}/contact-sheet.png",
            "interval_seconds": sheet.interval_seconds,
            "thumbnails": sheet.thumbnails,
        },
    }
    return entry, {f"{folder}/video.mp4": mp4, f"{folder}/contact-sheet.png": png}, warnings


def _readme(inp: PackageInput, key: SigningKey) -> str:
    return f"""Video export {inp.export_id}, case {inp.case_number}
Range {iso(inp.start)} to {iso(inp.end)} (UTC).

manifest.json says what this package holds: who asked and who approved, each camera's registry
record and legal basis, the mask plan, the recorded segments used (SHA-256), gaps, and the SHA-256
of every file. manifest.sig is its Ed25519 signature; SHA256SUMS lists the same hashes for
sha256sum, and SHA256SUMS.sig signs that list.

Signing key fingerprint (SHA-256 of the DER public key): {key.fingerprint}
Get the public key from the issuing organisation (GET /api/v1/exports/public-key or
`vms export public-key`), never from this package, and compare its fingerprint:
  openssl pkey -pubin -in key.pem -outform DER | sha256sum

Verify with vms:
  vms export verify package.zip --public-key key.pem

Verify with standard tools only (OpenSSL 3, coreutils, unzip):
  unzip package.zip -d pkg && cd pkg
  openssl pkeyutl -verify -pubin -inkey ../key.pem -rawin -in manifest.json -sigfile manifest.sig
  openssl pkeyutl -verify -pubin -inkey ../key.pem -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig
  sha256sum -c SHA256SUMS
  find . -type f | sed 's|^\\./||' | sort > /tmp/present
  (cut -c67- SHA256SUMS; printf '%s\\n' SHA256SUMS SHA256SUMS.sig manifest.sig) | sort > /tmp/listed
  diff /tmp/present /tmp/listed && echo "no extra or missing files"
"""


def package_name(export_id: int, case_number: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in case_number)[:60]
    return f"export-{export_id}-{safe}.zip"
