"""Registry test fixtures: a facility manager and their organisation."""

from __future__ import annotations

import pytest

from tests.factories import Actor, Factory
from vms.core.models import Organisation


@pytest.fixture
def fm(factory: Factory) -> Actor:
    return factory.user("facility_manager")


@pytest.fixture
def org(fm: Actor) -> Organisation:
    return fm.user.organisation
