"""`vms export verify` reads a package from an unknown source: a zip bomb is refused from its
headers, before anything is decompressed."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from vms.export import manifest as mf
from vms.export.verify import verify_package

pytestmark = pytest.mark.nodb

PEM = (
    b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    b"-----END PUBLIC KEY-----\n"
)


@pytest.mark.parametrize("member", [mf.MANIFEST, "camera-1/video.mp4"])
def test_a_zip_bomb_is_refused_before_it_expands(tmp_path: Path, member: str) -> None:
    bomb = tmp_path / "package.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, b"\0" * (64 * 1024 * 1024))
        for name in mf.META_FILES - {member}:
            zf.writestr(name, b"x")
    assert bomb.stat().st_size < 1024 * 1024
    started = time.monotonic()
    result = verify_package(bomb, PEM)
    assert not result.ok
    assert result.problem is not None
    assert "zip bomb" in result.problem
    assert time.monotonic() - started < 1.0
