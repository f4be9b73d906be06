"""What every `vms` sub-command shares: one-line errors, validated settings, a unit of work.

Domain CLIs (`registry.cli`, `retention.cli`, `vms.export.cli`) import these from here, so the
command tree in `vms.cli` is the only module that knows all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from vms.core.config import Settings
from vms.core.db import make_engine, make_sessionmaker, session_scope
from vms.core.errors import ConfigError, DomainError


def fail(msg: str, code: int = 1) -> NoReturn:
    """One line on stderr, non-zero exit: what every CLI error looks like."""
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """Settings from the environment, or exit naming the variable that is wrong."""
    try:
        settings = Settings()
        settings.validate_for_startup()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        fail(f"invalid setting VMS_{where.upper()}: {first['msg']}")
    except ConfigError as exc:
        fail(str(exc))
    return settings


@contextmanager
def cli_session(settings: Settings) -> Iterator[Session]:
    """A committed unit of work on the configured database; a DomainError exits with its
    message."""
    engine = make_engine(settings.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    except DomainError as exc:
        fail(exc.msg)
    finally:
        engine.dispose()
