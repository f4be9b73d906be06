"""`make run`'s demo: one user per role for the web interface, with a fresh password per start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.conftest import TEST_KEY
from vms.all_models import Base
from vms.core import accounts
from vms.core.config import Settings
from vms.core.errors import Unauthorized
from vms.core.models import Role
from vms.demo import WEB_USERS, Demo


def test_demo_users_can_sign_in_with_the_announced_password(
    isolated_db_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        profile="test",
        data_dir=tmp_path,
        database_url=isolated_db_url,
        secret_key=SecretStr(TEST_KEY),
    )
    engine = create_engine(settings.db_url)
    Base.metadata.create_all(engine)
    demo = Demo(settings)
    first = demo._web_users()
    second = demo._web_users()
    assert first != second
    assert {role for _, _, role in WEB_USERS} == set(Role) - {Role.admin}
    with Session(engine) as session:
        for _, email, _ in WEB_USERS:
            token, _ = accounts.login(session=session, email=email, password=second, ttl_hours=1)
            assert token.startswith("vms_")
        with pytest.raises(Unauthorized):  # the previous start's password is gone
            accounts.login(session=session, email=WEB_USERS[0][1], password=first, ttl_hours=1)
    engine.dispose()
