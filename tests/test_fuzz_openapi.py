"""Schema-driven fuzzing of every operation in the OpenAPI document: zero 5xx.

Requests are made as an administrator, so they get past authentication into validation and the
services. Each operation is its own test item, with its own rolled-back database.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tests.conftest import TEST_KEY
from tests.factories import Factory
from vms.api import create_app
from vms.core.config import Settings
from vms.core.models import Role

# Endpoints that stream without end are exercised by their own tests, not by the fuzzer.
_STREAMING_SUFFIXES = ("/live.mjpeg",)


def _operations() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as d:
        app = create_app(Settings(profile="test", data_dir=Path(d), secret_key=SecretStr(TEST_KEY)))
        paths = app.openapi()["paths"]
        app.state.engine.dispose()
    return sorted(
        (method.upper(), path)
        for path, ops in paths.items()
        for method in ops
        if not path.endswith(_STREAMING_SUFFIXES)
    )


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: str(v))
def test_no_server_errors(method: str, path: str, app: FastAPI, factory: Factory) -> None:
    admin = factory.user(Role.admin)
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]

    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        response = case.call(headers=admin.headers)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        )

    run()
