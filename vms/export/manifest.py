"""The package layout and the manifest's byte format, shared by the builder and the verifier.

Pure standard library: the offline verifier imports this and nothing that needs a database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, BinaryIO

FORMAT = "vms-export/1"
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"
SUMS = "SHA256SUMS"
SUMS_SIG = "SHA256SUMS.sig"
# Members that are not listed in the manifest's `files`: the manifest itself, the checksum list
# derived from it, and the two signatures.
META_FILES = frozenset({MANIFEST, MANIFEST_SIG, SUMS, SUMS_SIG})


def canonical_json(obj: Any) -> bytes:
    """The exact bytes that are signed: sorted keys, two-space indent, UTF-8, final newline.

    Indented (not compact) so a recipient can read it and grep a hash out of it.
    """
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def sha256sums(manifest_bytes: bytes, files: Iterable[tuple[str, str]]) -> bytes:
    """`sha256sum -c` input covering the manifest and every listed file, in manifest order."""
    lines = [f"{hashlib.sha256(manifest_bytes).hexdigest()}  {MANIFEST}"]
    lines += [f"{digest}  {path}" for path, digest in files]
    return ("\n".join(lines) + "\n").encode("ascii")


def hash_stream(fh: BinaryIO, chunk: int = 1 << 20) -> tuple[str, int]:
    """SHA-256 hex and size of everything `fh` yields."""
    h = hashlib.sha256()
    size = 0
    while block := fh.read(chunk):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size


def safe_member_name(name: str) -> bool:
    """Relative, forward-slash, no `..`: names that unpack inside the target folder only."""
    if not name or name.startswith("/") or "\\" in name or name.endswith("/"):
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts) and ":" not in parts[0]
