"""The installation signing key: created once, stored encrypted, the same key afterwards."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import TEST_KEY
from vms.core import signing
from vms.core.config import generate_key
from vms.core.crypto import SecretBox


def test_created_once_then_loaded(tmp_path: Path) -> None:
    box = SecretBox(TEST_KEY.encode())
    key, created = signing.load_or_create(data_dir=tmp_path, box=box)
    again, created_again = signing.load_or_create(data_dir=tmp_path, box=box)
    assert (created, created_again) == (True, False)
    assert again.public_pem == key.public_pem
    assert key.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    stored = signing.key_path(tmp_path)
    assert stored.stat().st_mode & 0o077 == 0
    assert b"PRIVATE KEY" not in stored.read_bytes()
    public = serialization.load_pem_public_key(key.public_pem)
    public.verify(key.sign(b"manifest"), b"manifest")  # type: ignore[union-attr,call-arg]


def test_wrong_installation_key_is_a_clear_error(tmp_path: Path) -> None:
    signing.load_or_create(data_dir=tmp_path, box=SecretBox(TEST_KEY.encode()))
    with pytest.raises(signing.SigningKeyError, match="cannot be decrypted"):
        signing.load_or_create(data_dir=tmp_path, box=SecretBox(generate_key()))


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    box = SecretBox(TEST_KEY.encode())
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        keys.append(signing.load_or_create(data_dir=tmp_path, box=box)[0].public_pem)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1
    assert [p.name for p in signing.key_path(tmp_path).parent.iterdir()] == [signing.KEY_FILE]
