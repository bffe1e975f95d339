"""The panel in a real browser (headless Chromium), on SQLite and PostgreSQL: signing in
with e-mail, password and a TOTP code typed into the form; the generic message for a wrong
code; acknowledging and resolving a crisis alert by clicking its buttons (the alert's row
changes, by that clinician); signing out, after which going back ends on the sign-in page;
and no horizontal scrolling at phone width."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Browser, Page, expect

from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Checkin
from tests.browser import pages
from tests.browser.conftest import NOW, PHONE, ZONE
from tests.panel_rig import PASSWORD, Rig

pytestmark = pytest.mark.browser
FAILED = "E-mail, password or code not recognised."


async def alert_row(db: Database, alert_id: int) -> Alert:
    async with db.transaction() as session:
        row = await session.get(Alert, alert_id)
    assert row is not None
    return row


async def a_clinic_day(rig: Rig) -> int:
    """Ana's patients: one with an open crisis alert, one with an urgent one, and check-ins
    due, open and missed today; the crisis alert's id."""
    ana = rig.accounts["ana"].clinician_id
    robin = await rig.patient("Robin Fairweather", ana)
    jules = await rig.patient("Jules Marchetti", ana)
    crisis = await rig.alert(robin, level="crisis", rule="suicidality", deadline_min=15)
    await rig.alert(jules, level="urgent", rule="severe_score", deadline_min=120)
    day = [("due", "phq9", "pending", 5), ("open", "gad7", "in_progress", -2),
           ("missed", "side_effects", "expired", -6)]  # fmt: skip
    async with rig.db.transaction() as session:
        for key, instrument, status, hours in day:
            due = NOW + timedelta(hours=hours)
            await Repository(session).add(
                Checkin(
                    patient_id=jules if key == "open" else robin,
                    idempotency_key=key,
                    instruments=[instrument],
                    status=status,
                    due_at=due,
                    expires_at=due + timedelta(hours=4 if key == "missed" else 24),
                )
            )
    return crisis


async def test_signing_in_with_a_totp_code_lands_on_today(
    rig: Rig, base_url: str, page: Page
) -> None:
    """The code pyotp computes from Ana's secret signs her in; the __Host- session cookie
    is kept over http://127.0.0.1 (Secure, HttpOnly, SameSite=Strict) and a reload stays
    signed in."""
    await page.goto(f"{base_url}/login")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await pages.screenshot(page, "login")
    await pages.sign_in_as(page, base_url, rig.accounts["ana"], NOW)
    await expect(page).to_have_url(f"{base_url}/")
    await expect(page.get_by_role("heading", level=1, name="Today")).to_contain_text(
        "Monday 4 May, 09:00 BST"
    )
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "__Host-checkin"]
    assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"]) == (True, True, "Strict")
    await page.reload()
    await expect(page).to_have_url(f"{base_url}/")
    await expect(page.locator("header .who")).to_have_text("Dr ana")


async def test_the_session_cookie_is_kept_on_localhost_too(
    rig: Rig, base_url: str, page: Page
) -> None:
    """http://localhost is a secure context for Chromium as 127.0.0.1 is: signed in there,
    Today opens (the Secure cookie was stored and sent back)."""
    local = base_url.replace("127.0.0.1", "localhost")
    await pages.sign_in_as(page, local, rig.accounts["ben"], NOW)
    await expect(page).to_have_url(f"{local}/")
    await page.goto(f"{local}/")
    await expect(page.locator("header .who")).to_have_text("Dr ben")


async def test_a_wrong_code_shows_only_the_generic_failure(
    rig: Rig, base_url: str, page: Page
) -> None:
    """A code of ten minutes ago is refused with the one generic sentence; the e-mail stays
    filled in, the password does not, and no session cookie is set."""
    ana = rig.accounts["ana"]
    stale = pages.totp(ana, NOW - timedelta(minutes=10))
    assert stale != pages.totp(ana, NOW)
    await pages.sign_in(page, base_url, ana.email, PASSWORD, stale)
    await expect(page).to_have_url(f"{base_url}/login")
    await expect(page.get_by_role("alert")).to_have_text(FAILED)
    await expect(page.get_by_label("E-mail")).to_have_value(ana.email)
    await expect(page.get_by_label("Password")).to_have_value("")
    assert "__Host-checkin" not in {c["name"] for c in await page.context.cookies()}


async def test_acknowledging_then_resolving_a_crisis_alert(
    rig: Rig, base_url: str, page: Page
) -> None:
    """Ana clicks Acknowledge on the crisis alert: the page says so and the row is
    acknowledged by her; she resolves it with a reason from the list and it leaves the page."""
    crisis = await a_clinic_day(rig)
    ana = rig.accounts["ana"]
    await pages.sign_in_as(page, base_url, ana, NOW)
    item = pages.alert_item(page, "Robin Fairweather")
    await expect(item.locator(".what")).to_have_text("Crisis: Suicidal thoughts endorsed")
    await expect(item.locator(".state")).to_contain_text("Not acknowledged")
    await pages.screenshot(page, "today")
    await pages.acknowledge(page, "Robin Fairweather")
    await expect(page.get_by_role("status")).to_have_text("Alert acknowledged.")
    await expect(item.locator(".state")).to_contain_text("Acknowledged")
    await expect(item.get_by_role("button", name="Acknowledge")).to_have_count(0)
    row = await alert_row(rig.db, crisis)
    assert (row.status, row.acknowledged_by) == ("acknowledged", ana.clinician_id)
    await pages.resolve(page, "Robin Fairweather", "Patient contacted")
    await expect(page.get_by_role("status")).to_have_text("Alert resolved.")
    await expect(item).to_have_count(0)
    await expect(page.get_by_role("heading", name="Alerts to act on")).to_have_text(
        "Alerts to act on (1)"
    )
    row = await alert_row(rig.db, crisis)
    assert (row.status, row.resolved_by) == ("resolved", f"clinician:{ana.clinician_id}")


async def test_after_signing_out_going_back_ends_on_the_sign_in_page(
    rig: Rig, base_url: str, page: Page
) -> None:
    """Sign out lands on /login; the browser's Back button asks for Today again (no-store:
    nothing cached) and is sent to /login, the old cookie gone."""
    await pages.sign_in_as(page, base_url, rig.accounts["ben"], NOW)
    await expect(page).to_have_url(f"{base_url}/")
    await pages.sign_out(page)
    await expect(page).to_have_url(f"{base_url}/login")
    await page.go_back()
    await expect(page).to_have_url(f"{base_url}/login")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert "__Host-checkin" not in {c["name"] for c in await page.context.cookies()}


async def test_no_horizontal_scroll_at_phone_width(
    rig: Rig, base_url: str, browser: Browser
) -> None:
    """At 390 x 844 CSS pixels, /login and a Today with alerts and check-ins fit the width."""
    await a_clinic_day(rig)
    context = await browser.new_context(
        viewport=PHONE, locale="en-GB", timezone_id=ZONE, is_mobile=True, has_touch=True
    )
    try:
        page = await context.new_page()
        await page.goto(f"{base_url}/login")
        scroll, client = await pages.widths(page)
        assert scroll <= client == PHONE["width"], f"/login: {scroll} px wide in {client}"
        await pages.sign_in_as(page, base_url, rig.accounts["ana"], NOW)
        await expect(page.get_by_role("heading", level=1, name="Today")).to_be_visible()
        scroll, client = await pages.widths(page)
        assert scroll <= client == PHONE["width"], f"Today: {scroll} px wide in {client}"
        await pages.screenshot(page, "today-phone")
    finally:
        await context.close()
