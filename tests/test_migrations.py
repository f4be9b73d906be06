"""Migrations: upgrade from empty, downgrade to nothing, and no drift from the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from vms.all_models import Base
from vms.core import migrate
from vms.core.db import make_engine


def test_upgrade_downgrade_and_no_drift(isolated_db_url: str) -> None:
    engine = make_engine(isolated_db_url)
    # isolated_db_url comes with create_all; start from a truly empty database.
    Base.metadata.drop_all(engine)
    migrate.upgrade(isolated_db_url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations drift: {diff}"
    migrate.downgrade(isolated_db_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(isolated_db_url)
    engine.dispose()
