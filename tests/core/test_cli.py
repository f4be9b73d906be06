"""The `vms` command: one-line errors and non-zero exits on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def vms(isolated_db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "VMS_DATABASE_URL": isolated_db_url,
            "VMS_DATA_DIR": str(tmp_path),
            "VMS_PROFILE": "test",
        }
        return subprocess.run(
            [sys.executable, "-m", "vms.cli", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_users_create_json_gives_a_token(vms) -> None:  # type: ignore[no-untyped-def]
    assert vms("orgs", "create", "Polisen").returncode == 0
    r = vms(
        "users",
        "create",
        "--org",
        "Polisen",
        "--role",
        "police",
        "--email",
        "p@polisen.se",
        "--password-stdin",
        "--json",
        stdin="a-long-password\n",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["role"] == "police"
    assert out["token"].startswith("vms_")
    assert out["organisation"] == "Polisen"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["users", "create", "--org", "Nope", "--role", "dpo", "--email", "a@b.se"],
            "error: no organisation named 'Nope'",
        ),
        (
            ["users", "create", "--org", "Org", "--role", "boss", "--email", "a@b.se"],
            "error: unknown role 'boss'",
        ),
        (
            ["users", "create", "--org", "Org", "--role", "dpo", "--email", "not-an-email"],
            "error: invalid email 'not-an-email'",
        ),
        (["orgs", "create", "Org"], "error: an organisation named 'Org' already exists"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(vms, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    assert vms("orgs", "create", "Org").returncode == 0
    r = vms(*args)
    assert r.returncode != 0
    assert r.stderr.strip().startswith(message), r.stderr


def test_short_password_from_stdin(vms) -> None:  # type: ignore[no-untyped-def]
    vms("orgs", "create", "Org")
    r = vms(
        "users",
        "create",
        "--org",
        "Org",
        "--role",
        "dpo",
        "--email",
        "a@b.se",
        "--password-stdin",
        stdin="short\n",
    )
    assert r.returncode == 1
    assert r.stderr.strip() == "error: password must be at least 8 characters"
