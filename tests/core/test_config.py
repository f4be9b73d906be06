"""Settings are validated at start-up with messages that say what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from vms.core.config import Settings
from vms.core.errors import ConfigError


def test_prod_refuses_a_missing_secret(tmp_path: Path) -> None:
    s = Settings(profile="prod", data_dir=tmp_path, database_url="sqlite:///x.db")
    with pytest.raises(ConfigError, match="VMS_SECRET_KEY must be set"):
        s.validate_for_startup()


def test_prod_refuses_default_database(tmp_path: Path) -> None:
    s = Settings(profile="prod", data_dir=tmp_path, secret_key=SecretStr(new_key()))
    with pytest.raises(ConfigError, match="VMS_DATABASE_URL must be set"):
        s.validate_for_startup()


def new_key() -> str:
    from vms.core.config import generate_key

    return generate_key().decode()


def test_dev_generates_and_keeps_a_key(tmp_path: Path) -> None:
    s = Settings(profile="dev", data_dir=tmp_path)
    first = s.secret_key_bytes()
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert Settings(profile="dev", data_dir=tmp_path).secret_key_bytes() == first


def test_bad_key_is_named(tmp_path: Path) -> None:
    s = Settings(profile="dev", data_dir=tmp_path, secret_key=SecretStr("short"))
    with pytest.raises(ConfigError, match="VMS_SECRET_KEY"):
        s.validate_for_startup()


def test_unknown_database_scheme() -> None:
    with pytest.raises(ValidationError, match="sqlite:// or postgresql://"):
        Settings(database_url="mysql://x")


def test_postgres_url_gets_psycopg3() -> None:
    assert Settings(database_url="postgresql://u@h/db").db_url == "postgresql+psycopg://u@h/db"


def test_cli_reports_bad_setting_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "VMS_PORT": "not-a-port", "VMS_DATA_DIR": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "vms.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("error: invalid setting VMS_PORT")
    assert len(r.stderr.strip().splitlines()) == 1
