"""Fixtures for the sharing tests that run the whole server (API, pipeline, relay)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline.conftest import LiveServer
from vms.core.config import Settings


@pytest.fixture
def live_server(iso_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(iso_settings) as server:
        yield server
