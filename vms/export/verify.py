"""Offline verification of an export package: the zip and the public key, nothing else.

No database, no settings, no network: a recipient with only this file (and `cryptography`) can
run it. Checks, in order, and stops at the first problem:
  1. the zip opens, its member names are safe and unique, and its declared sizes are sane (a
     zip bomb is refused before anything is decompressed);
  2. manifest.json is signed by the given key (manifest.sig);
  3. the members are exactly the manifest's files plus the four fixed ones;
  4. every listed file has the listed size and SHA-256;
  5. SHA256SUMS is signed by the key and says exactly what the manifest says.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vms.core.signing import fingerprint
from vms.export import manifest as mf


@dataclass
class VerifyResult:
    ok: bool
    problem: str | None = None
    manifest: dict[str, Any] | None = None
    checked_files: int = 0
    key_fingerprint: str | None = None
    summary: list[str] = field(default_factory=list)


class _Problem(Exception):
    pass


# Bounds for a package from an unknown source: manifest and signatures are small; video members
# are already compressed, so a high ratio of declared to stored size is a zip bomb.
MAX_MEMBERS = 10_000
MAX_META_BYTES = 64 * 1024 * 1024
MAX_RATIO = 200
RATIO_FLOOR_BYTES = 1024 * 1024


def _check_sizes(zf: zipfile.ZipFile) -> None:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _Problem(f"the zip holds {len(infos)} members, more than a package can have")
    for info in infos:
        if info.file_size > RATIO_FLOOR_BYTES and (
            info.file_size > MAX_RATIO * max(info.compress_size, 1)
        ):
            raise _Problem(
                f"{info.filename} would expand {info.file_size // max(info.compress_size, 1)}"
                " times: refused as a zip bomb"
            )
        if info.filename in mf.META_FILES and info.file_size > MAX_META_BYTES:
            raise _Problem(f"{info.filename} is larger than {MAX_META_BYTES} bytes")


def _read_meta(zf: zipfile.ZipFile, name: str) -> bytes:
    """A small member, read with a hard bound whatever its header says."""
    with zf.open(name) as fh:
        data = fh.read(MAX_META_BYTES + 1)
    if len(data) > MAX_META_BYTES:
        raise _Problem(f"{name} is larger than {MAX_META_BYTES} bytes")
    return data


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise _Problem("the public key is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise _Problem("the public key is not an Ed25519 key")
    return key


def verify_package(package: Path, public_key_pem: bytes) -> VerifyResult:
    """Check `package` against the key; `ok` False names the first problem."""
    result = VerifyResult(ok=False)
    try:
        key = load_public_key(public_key_pem)
        result.key_fingerprint = fingerprint(public_key_pem)
        _verify(package, key, result)
    except _Problem as exc:
        result.problem = str(exc)
        return result
    result.ok = True
    result.summary = summarise(result.manifest or {})
    return result


def _verify(package: Path, key: Ed25519PublicKey, result: VerifyResult) -> None:
    try:
        zf = zipfile.ZipFile(package)
    except FileNotFoundError as exc:
        raise _Problem(f"{package}: no such file") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise _Problem(f"{package.name} is not a readable zip file") from exc
    with zf:
        _check_sizes(zf)
        names = zf.namelist()
        dupes = sorted(n for n, c in Counter(names).items() if c > 1)
        if dupes:
            raise _Problem(f"the zip holds {dupes[0]!r} more than once")
        unsafe = [n for n in names if not mf.safe_member_name(n)]
        if unsafe:
            raise _Problem(f"the zip holds an unsafe or unexpected name {unsafe[0]!r}")
        for required in (mf.MANIFEST, mf.MANIFEST_SIG, mf.SUMS, mf.SUMS_SIG):
            if required not in names:
                raise _Problem(f"{required} is missing from the package")
        manifest_bytes = _read_meta(zf, mf.MANIFEST)
        try:
            key.verify(_read_meta(zf, mf.MANIFEST_SIG), manifest_bytes)
        except InvalidSignature as exc:
            raise _Problem(
                "manifest.sig is not a valid signature of manifest.json by this key "
                "(the manifest was altered, or the package was signed by another key)"
            ) from exc
        manifest = _parse_manifest(manifest_bytes)
        result.manifest = manifest
        signer = manifest.get("signing_key", {}).get("fingerprint_sha256")
        if signer is not None and signer != result.key_fingerprint:
            raise _Problem(
                f"the manifest names signing key {signer} but verified with "
                f"{result.key_fingerprint}"
            )
        listed = manifest["files"]
        listed_names = [f["path"] for f in listed]
        if len(set(listed_names)) != len(listed_names):
            raise _Problem("the manifest lists a file twice")
        expected = set(listed_names) | mf.META_FILES
        extra = sorted(set(names) - expected)
        if extra:
            raise _Problem(f"{extra[0]} is in the package but not listed in the manifest")
        missing = sorted(expected - set(names))
        if missing:
            raise _Problem(f"{missing[0]} is listed in the manifest but missing from the package")
        for entry in listed:
            declared = zf.getinfo(entry["path"]).file_size
            if declared != entry.get("size_bytes", declared):
                raise _Problem(
                    f"{entry['path']}: {declared} bytes, the manifest says {entry['size_bytes']}"
                )
            with zf.open(entry["path"]) as fh:
                digest, size = mf.hash_stream(cast(BinaryIO, fh))
            if digest != entry["sha256"]:
                raise _Problem(
                    f"{entry['path']}: SHA-256 {digest} does not match the manifest's "
                    f"{entry['sha256']} (the file was altered)"
                )
            if size != entry.get("size_bytes", size):
                raise _Problem(
                    f"{entry['path']}: {size} bytes, the manifest says {entry['size_bytes']}"
                )
            result.checked_files += 1
        sums = _read_meta(zf, mf.SUMS)
        try:
            key.verify(_read_meta(zf, mf.SUMS_SIG), sums)
        except InvalidSignature as exc:
            raise _Problem(
                "SHA256SUMS.sig is not a valid signature of SHA256SUMS by this key"
            ) from exc
        if sums != mf.sha256sums(manifest_bytes, ((f["path"], f["sha256"]) for f in listed)):
            raise _Problem("SHA256SUMS does not list exactly the manifest's files and hashes")


def _parse_manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Problem("manifest.json is not valid JSON") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != mf.FORMAT:
        raise _Problem(f"manifest.json is not a {mf.FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)
        for f in files
    ):
        raise _Problem("manifest.json has no valid `files` list")
    for f in files:
        if not mf.safe_member_name(f["path"]) or f["path"] in mf.META_FILES:
            raise _Problem(f"the manifest lists an invalid file name {f['path']!r}")
    return manifest


def summarise(manifest: dict[str, Any]) -> list[str]:
    """What the package is, in a few lines for a person."""
    req = manifest.get("requested_by") or {}
    appr = manifest.get("approved_by") or {}
    ground = manifest.get("legal_ground") or {}
    rng = manifest.get("range") or {}
    lines = [
        f"export {manifest.get('export_id')}, case {manifest.get('case_number')}",
        f"range {rng.get('start')} to {rng.get('end')}",
        f"legal ground: [{ground.get('category')}] {ground.get('text')}",
        f"requested by {req.get('officer') or req.get('email')} ({req.get('unit')}) "
        f"at {manifest.get('requested_at')}",
        f"approved by {appr.get('email')} ({appr.get('role')}) at {manifest.get('approved_at')}",
        f"built {manifest.get('built_at')} by vms {manifest.get('software', {}).get('version')}",
    ]
    for cam in manifest.get("cameras", []):
        reg = cam.get("registry") or {}
        vid = cam.get("video") or {}
        plans = ", ".join(p["hash"][:12] for p in cam.get("mask_plans", [])) or "none"
        lines.append(
            f"camera {cam.get('camera_id')} {cam.get('name')!r} of {reg.get('organisation')}: "
            f"{vid.get('frames')} frames {vid.get('first_frame_at')} to {vid.get('last_frame_at')} "
            f"({vid.get('method')}), {len(cam.get('segments', []))} segments, "
            f"{len(cam.get('gaps', []))} gaps, mask plan {plans}"
        )
    for warning in manifest.get("warnings", []):
        lines.append(f"warning: {warning}")
    return lines
