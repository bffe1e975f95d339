"""What a clinician does in the panel, as browser steps: real typing and clicks through
Playwright, found by the labels and button names a person reads. Tests of new pages (enrol
and its QR code, the patient's chart) add their steps here.

``decode_qr`` reads a QR code from a PNG (zxing-cpp, a wheel with no system library), so
a test can check that a code on screen says what it should.
"""

from __future__ import annotations

import io
import os
from datetime import datetime
from pathlib import Path

import pyotp
import zxingcpp
from PIL import Image
from playwright.async_api import Locator, Page

from tests.panel_rig import PASSWORD, Account

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


def totp(account: Account, at: datetime) -> str:
    """The account's code at `at`, as an authenticator app computes it."""
    return pyotp.TOTP(account.secret).at(at)


async def sign_in(page: Page, base_url: str, email: str, password: str, code: str) -> None:
    """Open the sign-in page, type the e-mail, password and code, press Sign in."""
    await page.goto(f"{base_url}/login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_label("Code from your authenticator app").fill(code)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


async def sign_in_as(page: Page, base_url: str, account: Account, at: datetime) -> None:
    """Sign the rig's account in with its password and its TOTP code at `at`."""
    await sign_in(page, base_url, account.email, PASSWORD, totp(account, at))


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_load_state()


def alert_item(page: Page, patient: str) -> Locator:
    """The Today page's alerts of the patient (`.first`: the most urgent)."""
    return page.locator("li.alert").filter(has=page.locator("p.who", has_text=patient))


async def acknowledge(page: Page, patient: str) -> None:
    await alert_item(page, patient).get_by_role("button", name="Acknowledge").click()
    await page.wait_for_load_state()


async def resolve(page: Page, patient: str, reason: str) -> None:
    """Choose `reason` (its label, e.g. "Patient contacted") and press Resolve."""
    item = alert_item(page, patient)
    await item.get_by_label("Reason").select_option(label=reason)
    await item.get_by_role("button", name="Resolve").click()
    await page.wait_for_load_state()


async def widths(page: Page) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the page: a horizontal scroll bar when the first is
    larger. Evaluated over the DevTools protocol, which the page's CSP does not govern."""
    found = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return int(found[0]), int(found[1])


async def screenshot(page: Page, name: str) -> None:
    """With CHECKIN_SCREENSHOTS=1, save the whole page as docs/img/panel-<name>.png."""
    if os.environ.get("CHECKIN_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"panel-{name}.png", full_page=True)


def decode_qr(png: bytes) -> str:
    """The text of the one QR code in the PNG image; AssertionError if there is none."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    codes = [f.text for f in found if f.format == zxingcpp.BarcodeFormat.QRCode]
    assert len(codes) == 1, f"expected one QR code in the image, found {len(codes)}"
    return codes[0]
