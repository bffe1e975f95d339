"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, headless, against
the real service app served over HTTP (``served.py``) on a real SQLite file and a real
PostgreSQL database (the ``db`` fixture's two dialects).

The browser is ``$CHECKIN_CHROMIUM``, else ``chromium`` on the PATH; Playwright's own
browser download is never used. Without one these tests fail when ``CI`` is set or
``CHECKIN_REQUIRE_BROWSER=1`` (a CI machine must not pass by skipping them), and skip
elsewhere with a reason that says how to install it.

The session cookie is ``__Host-`` and ``Secure``: Chromium keeps it on ``http://127.0.0.1``
and ``http://localhost`` (loopback origins are secure contexts), so the panel is served
over plain HTTP, no certificate needed (``test_signing_in_with_a_totp_code_lands_on_today``
and ``test_the_session_cookie_is_kept_on_localhost_too`` show it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from bot.config import Panel
from bot.storage.database import Database
from tests.browser.served import served
from tests.panel_rig import Rig, panel_rig

# Monday 4 May 2026, 09:00 in London: every page (and screenshot) shows this time, written
# the British way (`[panel] locale = "en-GB"`, as a London clinic would set it).
NOW = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
ZONE = "Europe/London"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1100, "height": 800}
INSTALL_HINT = (
    "Chromium is not installed: `sudo apt-get install -y chromium` (Debian, Ubuntu), or set "
    "CHECKIN_CHROMIUM to a Chromium or Chrome binary"
)


def chromium_path() -> str | None:
    return os.environ.get("CHECKIN_CHROMIUM") or shutil.which("chromium")


def browser_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("CHECKIN_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; fails (in CI) or skips (elsewhere) when there is none."""
    path = chromium_path()
    if path and os.access(path, os.X_OK):
        return path
    if browser_required():
        pytest.fail(f"{INSTALL_HINT} (required: CI or CHECKIN_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(INSTALL_HINT)


@pytest.fixture(autouse=True)
def _browser_first(request: pytest.FixtureRequest) -> None:
    """A browser test without a browser stops before its database and server are made."""
    if request.node.get_closest_marker("browser"):
        request.getfixturevalue("chromium")


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser profile at desktop width, in English and the clinic's time zone."""
    context = await browser.new_context(viewport=DESKTOP, locale="en-GB", timezone_id=ZONE)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    """The clinic: two clinicians with panel accounts (password and TOTP), on the fixed
    clock. (Each account costs an argon2 hash, about 0.5 s: add the ones a test needs.)"""
    async with panel_rig(db, Panel(timezone=ZONE, locale="en-GB")) as rig:
        rig.clock.now = NOW
        await rig.add("ana")
        await rig.add("ben")
        yield rig


@pytest.fixture
def base_url(rig: Rig) -> Iterator[str]:
    """The rig's clinic served over HTTP on 127.0.0.1, on the rig's database and clock."""
    with served(rig.app.settings, rig.clock) as url:
        yield url
