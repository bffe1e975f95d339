"""Enrolling a patient in a real browser (headless Chromium), on SQLite and PostgreSQL: a
clinician fills the Enrol form, lands on the link page, and the QR code on screen (read
back from a screenshot of the image, as a phone's camera would) says exactly the link in
the copyable field; "New link" shows a different link whose QR code matches it, and the
first link no longer works. The clinic has Telegram configured with a fixed @username, so
no Bot API call is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from playwright.async_api import Page, expect
from sqlmodel import select

from bot.app.conversations.enrollment import redeem
from bot.config.settings import Telegram
from bot.storage.tables import Patient
from tests.browser import pages
from tests.browser.conftest import NOW
from tests.browser.served import served
from tests.panel_rig import Rig

pytestmark = pytest.mark.browser
BOT = "mbc_checkin_test_bot"


@pytest.fixture
def telegram_url(rig: Rig) -> Iterator[str]:
    """The rig's clinic with Telegram configured, served on 127.0.0.1."""
    telegram = Telegram(token="123:TEST", bot_username=BOT, api_base_url="http://127.0.0.1:9/bot")
    with served(dataclasses.replace(rig.app.settings, telegram=telegram), rig.clock) as url:
        yield url


async def shown_link(page: Page) -> str:
    """The link in the copyable field, and the QR code beside it decoded: the same."""
    link = await page.get_by_label("Enrolment link (single use)").input_value()
    qr = page.get_by_role("img", name="QR code of the enrolment link above")
    assert pages.decode_qr(await qr.screenshot()) == link
    return link


async def test_enrol_on_telegram_and_read_the_qr_code(
    rig: Rig, telegram_url: str, page: Page
) -> None:
    await pages.sign_in_as(page, telegram_url, rig.accounts["ana"], NOW)
    await page.get_by_role("navigation", name="Sections").get_by_role("link", name="Enrol").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Enrol a patient")
    await page.get_by_label("Name or pseudonym").fill("Ines Moreau")
    await page.get_by_label("Channel").select_option(value="telegram")
    await page.get_by_label("Time zone").fill("Europe/Madrid")
    await page.get_by_role("button", name="Enrol").click()
    await page.wait_for_load_state()

    await expect(page.get_by_role("heading", level=1)).to_contain_text("Ines Moreau")
    first = await shown_link(page)
    assert first.startswith(f"https://t.me/{BOT}?start=")
    await pages.screenshot(page, "enrol-link")

    await page.get_by_role("button", name="New link").click()
    await page.wait_for_load_state()
    await expect(page.get_by_role("status")).to_contain_text("earlier links no longer work")
    second = await shown_link(page)
    assert second != first and second.startswith(f"https://t.me/{BOT}?start=")

    async with rig.db.transaction() as session:
        [patient] = (await session.exec(select(Patient))).all()
        assert (patient.display_name, patient.channel, patient.status, patient.timezone) == (
            "Ines Moreau", "telegram", "invited", "Europe/Madrid")  # fmt: skip
        assert patient.clinician_id == rig.accounts["ana"].clinician_id
        old_code, new_code = first.split("start=")[1], second.split("start=")[1]
        assert await redeem(session, old_code, "telegram", "chat-9", rig.clock.now) is None
        assert await redeem(session, new_code, "telegram", "chat-9", rig.clock.now) is not None
