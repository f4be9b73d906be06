"""Imports every module that defines tables, so `Base.metadata` is complete (Alembic, tests)."""

from vms.core import models as core_models
from vms.core.db import Base

__all__ = ["Base", "core_models"]
