"""Browser tests: Playwright driving Debian's Chromium against a real `vms` server (API,
pipeline, export worker under uvicorn) with real RTSP cameras (GStreamer) and a real ONVIF
device. One server and one browser serve the whole web suite; each test builds its own
organisation, users and cameras, so tests do not depend on each other's data.

Missing tools fail the test (never skip): `make test` installs Chromium (scripts/system-deps)
and Playwright (the `test` extra). `playwright install` is never used: it downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)
from sqlalchemy import Engine, create_engine, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from registry.models import Camera, CameraStatus
from tests.conftest import FAST_PIPELINE, PG_URL, make_settings
from tests.factories import Actor
from tests.peers.rtsp import unused_port
from tests.pipeline.conftest import LiveServer, committed
from vms.all_models import Base
from vms.core.config import Settings
from vms.core.db import make_engine
from vms.core.models import Organisation, Role

CHROMIUM = os.environ.get("VMS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--lang=sv-SE",  # the browser's own UI locale (date pickers): the users are Swedish
]
PASSWORD = "correct horse battery"
TIMEZONE = "Europe/Stockholm"  # where the users are: datetime inputs are in this local time
VIEWPORT: ViewportSize = {"width": 1366, "height": 860}  # a laptop screen

if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
    _CHROMIUM_PROBLEM: str | None = (
        f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (scripts/system-deps)"
    )
else:
    _CHROMIUM_PROBLEM = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here and item.fspath.basename.startswith(
            ("test_journey", "test_screenshots")
        ):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.rtsp)
            item.add_marker(pytest.mark.slow)


# -- the server -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def web_db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the web suite's own (the server's workers are other processes)."""
    if not PG_URL:
        url = f"sqlite:///{tmp_path_factory.mktemp('webdb') / 'web.db'}"
        eng = make_engine(url)
        Base.metadata.create_all(eng)
        eng.dispose()
        yield url
        return
    name = f"vms_web_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    eng = make_engine(url)
    Base.metadata.create_all(eng)
    eng.dispose()
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def web_settings(web_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(
        tmp_path_factory.mktemp("webdata"),
        web_db_url,
        pipeline=FAST_PIPELINE,
        # A tile server that is not there: the police map must fall back to its coordinate
        # view, as on a closed network (and the CSP allows exactly this origin).
        map_tile_url=f"http://127.0.0.1:{unused_port()}/{{z}}/{{x}}/{{y}}.png",
    )


@pytest.fixture(scope="session")
def server(web_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(web_settings) as live:
        yield live


@pytest.fixture(scope="session")
def web_engine(web_db_url: str) -> Iterator[Engine]:
    engine = make_engine(web_db_url)
    yield engine
    engine.dispose()


@dataclass
class Org:
    """An organisation of the test with a signed-in-able user per role."""

    org: Organisation
    users: dict[Role, Actor]


@pytest.fixture
def org(web_engine: Engine) -> Iterator[Org]:
    """A fresh organisation; its cameras are paused afterwards, so that the next test does not
    share the two cores with their workers."""
    with committed(web_engine) as f:
        org = f.org()
        users = {role: f.user(role, org, password=PASSWORD) for role in Role}
    yield Org(org, users)
    with Session(web_engine) as session:
        session.execute(
            update(Camera)
            .where(Camera.organisation_id == org.id, Camera.status == CameraStatus.active)
            .values(status=CameraStatus.paused)
        )
        session.commit()


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if _CHROMIUM_PROBLEM:
        pytest.fail(_CHROMIUM_PROBLEM, pytrace=False)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@dataclass
class BrowserErrors:
    """What must never happen on a page: uncaught script errors and CSP violations."""

    errors: list[str]

    def check(self) -> None:
        assert not self.errors, "errors in the page:\n" + "\n".join(self.errors)


def _new_context(browser: Browser, locale: str) -> tuple[BrowserContext, BrowserErrors]:
    context = browser.new_context(
        locale=locale, timezone_id=TIMEZONE, viewport=VIEWPORT, accept_downloads=True
    )
    context.set_default_timeout(15_000)
    seen = BrowserErrors([])

    def on_page(page: Page) -> None:
        page.on("pageerror", lambda exc: seen.errors.append(f"{page.url}: {exc}"))

        def on_console(msg: Any) -> None:
            text = msg.text
            if msg.type == "error" and ("Content Security Policy" in text or "Refused to" in text):
                seen.errors.append(f"{page.url}: {text}")

        page.on("console", on_console)

    context.on("page", on_page)
    return context, seen


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh browser context (its own cookies): one per user of a test."""
    opened: list[tuple[BrowserContext, BrowserErrors]] = []

    def make(locale: str = "sv-SE") -> Page:
        context, seen = _new_context(browser, locale)
        opened.append((context, seen))
        return context.new_page()

    yield make
    for context, seen in opened:
        context.close()
        seen.check()


def sign_in(page: Page, server: LiveServer, user: Actor, path: str = "/") -> None:
    """Sign in through the form, as a person does, and wait for the landing page."""
    page.goto(f"{server.url}/login?next={path}")
    page.locator("#login-email").fill(user.user.email)
    page.locator("#login-password").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("form.form button[type=submit]").click()
    assert "/login" not in page.url, page.content()[:2000]
