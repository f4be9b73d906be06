"""Building, signing and verifying packages, offline: with vms, with openssl/sha256sum alone,
and against every way a package can be tampered with."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.export.conftest import T0, package_input, segment_inputs
from tests.media import decoded_frames, make_run
from vms.core.signing import SigningKey
from vms.export import package
from vms.export.package import BuiltPackage, PackageError, coverage_gaps
from vms.export.verify import verify_package

OPENSSL = shutil.which("openssl")
S = dt.timedelta(seconds=1)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rewrite(src: Path, dst: Path, changes: dict[str, bytes | None]) -> Path:
    """A copy of the zip with members replaced (bytes), removed (None) or added."""
    content = members(src)
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in content.items():
            if name not in changes:
                zf.writestr(name, data)
        for name, new in changes.items():
            if new is not None:
                zf.writestr(name, new)
    return dst


def test_package_holds_what_the_manifest_says(
    built: Callable[..., BuiltPackage], signing_key: SigningKey, tmp_path: Path
) -> None:
    pkg = built()
    result = verify_package(pkg.path, signing_key.public_pem)
    assert result.ok, result.problem
    m = result.manifest
    assert m is not None
    assert m == pkg.manifest
    assert m["format"] == "vms-export/1"
    assert m["case_number"] == "5000-K123456-25"
    assert m["signing_key"]["fingerprint_sha256"] == signing_key.fingerprint
    names = set(members(pkg.path))
    assert names == {f["path"] for f in m["files"]} | {
        "manifest.json",
        "manifest.sig",
        "SHA256SUMS",
        "SHA256SUMS.sig",
    }
    assert {
        "camera-1/video.mp4",
        "camera-1/contact-sheet.png",
        "camera-2/video.mp4",
        "README.txt",
    } <= names
    cam1, cam2 = m["cameras"]
    assert cam1["gaps"] == []
    assert cam2["gaps"] == [
        {
            "start": "2025-03-14T09:00:03Z",
            "end": "2025-03-14T09:00:06Z",
            "seconds": 3.0,
            "reasons": [],
        }
    ]
    assert [s["id"] for s in cam2["segments"]] == [100, 101, 102]
    assert cam1["mask_plans"][0]["hash"] == "ab" * 32
    assert cam1["mask_plans"][0]["plan"]
    assert cam1["video"]["frames"] == 102
    assert cam2["video"]["frames"] == 72
    assert cam1["video"]["first_frame_at"] == "2025-03-14T09:00:01.300000Z"
    # The exported frames are exactly the source frames of the range.
    out = tmp_path / "cam2.mp4"
    out.write_bytes(members(pkg.path)["camera-2/video.mp4"])
    want = [i for i in range(13, 115) if not 30 <= i < 60]
    assert [i for _, i in decoded_frames(out)] == want
    assert any("case 5000-K123456-25" in line for line in result.summary)


def test_standard_tools_verify_the_package(
    built: Callable[..., BuiltPackage],
    public_key_file: Path,
    signing_key: SigningKey,
    tmp_path: Path,
) -> None:
    """The exact commands of docs/export.md, with openssl and sha256sum only."""
    if OPENSSL is None:
        pytest.fail("openssl (3.x) is needed for this test: apt-get install openssl")
    pkg = built()
    folder = tmp_path / "pkg"
    with zipfile.ZipFile(pkg.path) as zf:
        zf.extractall(folder)

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)

    for data, sig in (("manifest.json", "manifest.sig"), ("SHA256SUMS", "SHA256SUMS.sig")):
        r = run(
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(public_key_file),
            "-rawin",
            "-in",
            data,
            "-sigfile",
            sig,
        )
        assert r.returncode == 0, r.stderr
        assert "Signature Verified Successfully" in r.stdout
    r = run("sha256sum", "-c", "SHA256SUMS")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": OK") == len(pkg.manifest["files"]) + 1
    fp = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(public_key_file), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(fp).hexdigest() == signing_key.fingerprint

    # The same commands catch a change.
    manifest = folder / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"5000-K123456-25", b"5000-K999999-25"))
    r = run(
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        str(public_key_file),
        "-rawin",
        "-in",
        "manifest.json",
        "-sigfile",
        "manifest.sig",
    )
    assert r.returncode != 0
    (folder / "camera-1" / "video.mp4").write_bytes(b"not the video")
    assert run("sha256sum", "-c", "SHA256SUMS").returncode != 0


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda m: {"camera-1/video.mp4": _flip(m["camera-1/video.mp4"], 5000)},
            "camera-1/video.mp4: SHA-256",
        ),
        (
            lambda m: {"camera-2/contact-sheet.png": None},
            "camera-2/contact-sheet.png is listed in the manifest but missing",
        ),
        (
            lambda m: {"camera-1/extra.mp4": b"smuggled"},
            "camera-1/extra.mp4 is in the package but not listed",
        ),
        (
            lambda m: {"manifest.json": m["manifest.json"].replace(b"Anna Polis", b"Anna Polls")},
            "manifest.sig is not a valid signature",
        ),
        (lambda m: {"manifest.sig": None}, "manifest.sig is missing"),
        (
            lambda m: {"SHA256SUMS": m["SHA256SUMS"] + b"0" * 64 + b"  x\n"},
            "SHA256SUMS.sig is not a valid signature",
        ),
        (lambda m: {"../evil": b"x"}, "unsafe or unexpected name '../evil'"),
    ],
    ids=[
        "video-bit",
        "file-removed",
        "file-added",
        "manifest-edited",
        "no-signature",
        "sums-edited",
        "path-traversal",
    ],
)
def test_tampering_is_named(
    built: Callable[..., BuiltPackage],
    signing_key: SigningKey,
    tmp_path: Path,
    change: Callable[[dict[str, bytes]], dict[str, bytes | None]],
    problem: str,
) -> None:
    pkg = built()
    bad = rewrite(pkg.path, tmp_path / "bad.zip", change(members(pkg.path)))
    result = verify_package(bad, signing_key.public_pem)
    assert not result.ok
    assert result.problem is not None
    assert problem in result.problem


def test_resigned_manifest_with_another_key_fails(
    built: Callable[..., BuiltPackage], signing_key: SigningKey, tmp_path: Path
) -> None:
    pkg = built()
    forger = Ed25519PrivateKey.generate()
    content = members(pkg.path)
    manifest = content["manifest.json"].replace(b"Anna Polis", b"Someone Else")
    bad = rewrite(
        pkg.path,
        tmp_path / "forged.zip",
        {"manifest.json": manifest, "manifest.sig": forger.sign(manifest)},
    )
    result = verify_package(bad, signing_key.public_pem)
    assert not result.ok
    assert "manifest.sig is not a valid signature" in (result.problem or "")
    forger_pem = forger.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert not verify_package(pkg.path, forger_pem).ok


def test_duplicate_member_is_refused(
    built: Callable[..., BuiltPackage], signing_key: SigningKey, tmp_path: Path
) -> None:
    pkg = built()
    dup = tmp_path / "dup.zip"
    shutil.copy(pkg.path, dup)
    with zipfile.ZipFile(dup, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("README.txt", b"a second README that unzip would pick")
    result = verify_package(dup, signing_key.public_pem)
    assert result.problem == "the zip holds 'README.txt' more than once"


def test_not_a_zip_and_bad_key(signing_key: SigningKey, tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"hello")
    assert (
        verify_package(junk, signing_key.public_pem).problem
        == "junk.zip is not a readable zip file"
    )
    assert verify_package(junk, b"nonsense").problem == "the public key is not a PEM public key"


def test_altered_segment_is_refused(tmp_path: Path, signing_key: SigningKey) -> None:
    made = make_run(tmp_path / "c", start=T0, segments=2, seconds=2)
    segs = segment_inputs(made)
    with made[1].path.open("r+b") as fh:
        fh.seek(2000)
        fh.write(b"\xff\xff")
    inp = package_input({5: segs}, T0, T0 + 4 * S)
    with pytest.raises(PackageError, match=r"segment 2 of camera 5 \(Entré 5\) no longer matches"):
        package.build(inp, out_path=tmp_path / "p.zip", key=signing_key)
    made[1].path.unlink()
    with pytest.raises(PackageError, match=r"segment 2 of camera 5 .* is missing from disk"):
        package.build(inp, out_path=tmp_path / "p.zip", key=signing_key)
    assert not (tmp_path / "p.zip").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".build")] == []


def test_coverage_gaps_with_reasons() -> None:
    segs = [
        package.SegmentInput(1, Path("a"), T0, T0 + 10 * S, "x", 1),
        package.SegmentInput(2, Path("b"), T0 + dt.timedelta(seconds=10.2), T0 + 20 * S, "x", 1),
        package.SegmentInput(3, Path("c"), T0 + 30 * S, T0 + 40 * S, "x", 1),
    ]
    recorded = [{"start": T0 + 19 * S, "end": T0 + 31 * S, "reason": "camera_offline"}]
    gaps = coverage_gaps(segs, T0 - 5 * S, T0 + 45 * S, recorded)
    assert [(g["start"], g["end"], g["reasons"]) for g in gaps] == [
        ("2025-03-14T08:59:55Z", "2025-03-14T09:00:00Z", []),
        ("2025-03-14T09:00:20Z", "2025-03-14T09:00:30Z", ["camera_offline"]),
        ("2025-03-14T09:00:40Z", "2025-03-14T09:00:45Z", []),
    ]


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vms.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_cli_verify_needs_no_database_or_settings(
    built: Callable[..., BuiltPackage], public_key_file: Path, tmp_path: Path
) -> None:
    pkg = built()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    # A production profile without a secret key or database: anything that loaded settings
    # would fail at once.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMS_")}
    env |= {"VMS_PROFILE": "prod", "VMS_DATABASE_URL": "postgresql://nobody@192.0.2.1/none"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    ok = _cli(
        "export", "verify", str(pkg.path), "--public-key", str(public_key_file), env=env, cwd=empty
    )
    assert ok.returncode == 0, ok.stderr
    assert "OK: signature valid" in ok.stdout
    assert "case 5000-K123456-25" in ok.stdout
    assert not any(empty.iterdir()), "verify wrote files"
    bad = rewrite(pkg.path, tmp_path / "bad.zip", {"camera-2/video.mp4": b"x"})
    r = _cli("export", "verify", str(bad), "--public-key", str(public_key_file), env=env, cwd=empty)
    assert r.returncode == 1
    # A replaced file gives itself away by its size before its hash is even computed.
    assert r.stderr.startswith("error: bad.zip: camera-2/video.mp4: 1 bytes, the manifest says")
    assert r.stderr.count("\n") == 1


def test_cli_public_key_prints_the_installation_key(tmp_path: Path) -> None:
    from tests.conftest import TEST_KEY

    env = {k: v for k, v in os.environ.items() if not k.startswith("VMS_")}
    env |= {
        "VMS_DATA_DIR": str(tmp_path / "d"),
        "VMS_SECRET_KEY": TEST_KEY,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    first = _cli("export", "public-key", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    again = _cli("export", "public-key", env=env, cwd=tmp_path)
    assert again.stdout == first.stdout
    fp = _cli("export", "public-key", "--fingerprint", env=env, cwd=tmp_path).stdout.strip()
    assert len(fp) == 64
    env["VMS_SECRET_KEY"] = "A" * 43 + "="
    wrong = _cli("export", "public-key", env=env, cwd=tmp_path)
    assert wrong.returncode == 1
    assert "cannot be decrypted" in wrong.stderr
    manifest_sample = json.dumps({"k": 1})  # the key file never holds the key in clear
    stored = (tmp_path / "d" / "keys" / "export-signing-key.enc").read_text()
    assert "PRIVATE KEY" not in stored
    assert manifest_sample not in stored


def test_progress_rises_to_100(tmp_path: Path, signing_key: SigningKey) -> None:
    made = make_run(tmp_path / "c", start=T0, segments=3, seconds=2)
    seen: list[int] = []
    package.build(
        package_input({1: segment_inputs(made)}, T0, T0 + 6 * S),
        out_path=tmp_path / "p.zip",
        key=signing_key,
        progress=seen.append,
    )
    assert seen == sorted(seen)
    assert seen[0] < 10
    assert seen[-1] == 100
    assert len(set(seen)) >= 5
