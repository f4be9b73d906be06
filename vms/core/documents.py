"""Attached PDFs (legal-basis documents, sharing agreements): stored content-addressed by SHA-256
under `data_dir/documents`, one store for both (an identical file is kept once), checked against
the recorded SHA-256 whenever read."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Response

from vms.core.errors import Conflict, InvalidInput

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
PDF_MAGIC = b"%PDF-"
_UNSAFE_NAME = re.compile(r"[^\w.\- ()]+", re.UNICODE)


def safe_filename(name: str | None, default: str = "document.pdf") -> str:
    """The uploaded name without directories or unusual characters (at most 200 of them)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME.sub("_", base).strip(" .")[:200]
    return base or default


def check_pdf(content: bytes) -> None:
    if len(content) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(
            f"document larger than {MAX_DOCUMENT_BYTES} bytes", field="file", code="too_large"
        )
    if not content:
        raise InvalidInput("document is empty", field="file")
    if not content.startswith(PDF_MAGIC):
        raise InvalidInput("document is not a PDF (it must start with %PDF-)", field="file")


def store_pdf(content: bytes, documents_dir: Path) -> tuple[str, str]:
    """(sha256, path relative to documents_dir); written under a temporary name and renamed, so
    a reader never sees half a document, and never overwritten."""
    digest = hashlib.sha256(content).hexdigest()
    relative = Path(digest[:2]) / f"{digest}.pdf"
    target = documents_dir / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest, relative.as_posix()


def load_pdf(documents_dir: Path, storage_path: str, sha256: str, document_id: int) -> bytes:
    """The stored bytes, refused (409) when missing or changed since upload."""
    try:
        content = (documents_dir / storage_path).read_bytes()
    except FileNotFoundError as exc:
        raise Conflict(
            f"document {document_id} is missing from storage", field="document_id", code="integrity"
        ) from exc
    if hashlib.sha256(content).hexdigest() != sha256:
        raise Conflict(
            f"document {document_id} does not match its recorded SHA-256: it was changed in "
            "storage",
            field="document_id",
            code="integrity",
        )
    return content


def store_upload(
    content: bytes, filename: str | None, documents_dir: Path, default_name: str = "document.pdf"
) -> dict[str, Any]:
    """Check and store an uploaded PDF; the columns every document table has, to build its row."""
    check_pdf(content)
    digest, relative = store_pdf(content, documents_dir)
    return {
        "filename": safe_filename(filename, default_name),
        "content_type": "application/pdf",
        "size_bytes": len(content),
        "sha256": digest,
        "storage_path": relative,
    }


def upload_details(doc: Any) -> dict[str, Any]:
    """What the upload's audit entry says of the stored document."""
    return {
        "document_id": doc.id,
        "filename": doc.filename,
        "sha256": doc.sha256,
        "size_bytes": doc.size_bytes,
    }


def pdf_response(doc: Any, content: bytes) -> Response:
    """A stored document as a download: its own name (headers are Latin-1, so an ASCII fallback
    plus the RFC 5987 UTF-8 form) and its SHA-256."""
    fallback = doc.filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    fallback = fallback.replace('"', "_")
    disposition = (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(doc.filename, safe='')}"
    )
    return Response(
        content=content,
        media_type=doc.content_type,
        headers={"Content-Disposition": disposition, "X-Content-SHA256": doc.sha256},
    )
