"""Imports every module that defines tables, so `Base.metadata` is complete (Alembic, tests)."""

from permits import models as permits_models
from registry import models as registry_models
from retention import models as retention_models
from sharing import models as sharing_models
from vms.core import models as core_models
from vms.core.db import Base
from vms.export import models as export_models
from vms.pipeline.cluster import models as cluster_models

__all__ = [
    "Base",
    "cluster_models",
    "core_models",
    "export_models",
    "permits_models",
    "registry_models",
    "retention_models",
    "sharing_models",
]
