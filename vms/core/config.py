"""Settings: one object, read from `VMS_*` variables, validated at start-up."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vms.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_sample_media() -> Path:
    return (REPO_ROOT / ".." / "shared" / "sample_media").resolve()


class PipelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    segment_seconds: float = Field(10.0, gt=0.5, le=3600)
    open_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(5.0, gt=0)
    stall_seconds: float = Field(10.0, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    restart_budget: int = Field(20, ge=1, description="restarts allowed per budget window")
    restart_window_s: float = Field(600.0, gt=0)
    jpeg_quality: int = Field(80, ge=10, le=100)
    live_fps: float = Field(10.0, gt=0, le=60)


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep_interval_s: float = Field(300.0, gt=0)
    batch_size: int = Field(500, ge=1)
    disk_free_floor_bytes: int = Field(1_000_000_000, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VMS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    profile: Literal["dev", "test", "prod"] = "dev"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("data")
    database_url: str | None = None
    secret_key: SecretStr | None = Field(
        None, description="Fernet key (urlsafe base64, 32 bytes) for secrets at rest"
    )
    models_dir: Path | None = None
    sample_media_dir: Path | None = None
    token_ttl_hours: float = Field(12.0, gt=0)
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    admin_email: str = "admin@vms.local"
    export_ttl_hours: float = Field(168.0, gt=0)
    demo: bool = False
    log_level: str = "INFO"
    pipeline: PipelineSettings = PipelineSettings()
    retention: RetentionSettings = RetentionSettings()

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("VMS_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        if v is not None and v.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; the bare scheme would pick psycopg2.
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        return v

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vms.db').resolve()}"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or (self.resolved_sample_media / "models")

    @property
    def resolved_sample_media(self) -> Path:
        return self.sample_media_dir or default_sample_media()

    def secret_key_bytes(self) -> bytes:
        """The key that encrypts credentials and the signing key at rest.

        Outside production a key is generated once and kept in the data folder, so a newcomer
        needs no set-up; production refuses to start without an explicit key.
        """
        if self.secret_key is not None:
            key = self.secret_key.get_secret_value().encode()
            _check_fernet_key(key)
            return key
        if self.profile == "prod":
            raise ConfigError(
                "VMS_SECRET_KEY must be set when VMS_PROFILE=prod (generate one with: vms keygen)"
            )
        path = self.data_dir / "secret.key"
        if path.exists():
            key = path.read_bytes().strip()
            _check_fernet_key(key)
            return key
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = generate_key()
        path.write_bytes(key)
        path.chmod(0o600)
        return key

    def validate_for_startup(self) -> None:
        self.secret_key_bytes()
        if self.profile == "prod" and self.database_url is None:
            raise ConfigError("VMS_DATABASE_URL must be set when VMS_PROFILE=prod")
        if self.pipeline.backoff_max_s < self.pipeline.backoff_initial_s:
            raise ConfigError("VMS_PIPELINE__BACKOFF_MAX_S must be >= BACKOFF_INITIAL_S")


def generate_key() -> bytes:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32))


def _check_fernet_key(key: bytes) -> None:
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(key)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("VMS_SECRET_KEY is not urlsafe base64") from exc
    if len(raw) != 32:
        raise ConfigError("VMS_SECRET_KEY must decode to 32 bytes (generate one: vms keygen)")


@lru_cache
def get_settings() -> Settings:
    return Settings()
