"""A patient's series in a real browser (headless Chromium), on SQLite and PostgreSQL: a
clinician opens a patient from the panel, records a treatment session with its route and
dose through the form (typed and chosen as a person does), lands back on the patient's
page, and sees the session on the chart (its dashed marker labelled with number and dose)
and in the sessions table; the row in the database holds what was typed. Then a MADRS
rating by the same clinician appears in the scores table and on its own chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Page, expect
from sqlmodel import select

from bot.storage.answer_tables import Score
from bot.storage.repository import Repository
from bot.storage.tables import Patient, TreatmentSession
from tests.browser import pages
from tests.browser.conftest import NOW
from tests.panel_rig import Rig

pytestmark = pytest.mark.browser


async def a_patient_with_two_scores(rig: Rig) -> int:
    """Ana's patient: a PHQ-9 of 21 three days ago (baseline), 14 two hours ago."""
    patient = await rig.patient("Noor Castellanos", rig.accounts["ana"].clinician_id)
    rows = [
        Score(patient_id=patient, instrument="phq9", total=21, band="severe", valid=True,
              completed_at=NOW - timedelta(days=3), session_number=0),
        Score(patient_id=patient, instrument="phq9", total=14, band="moderate", valid=True,
              completed_at=NOW - timedelta(hours=2), session_number=0),
    ]  # fmt: skip
    async with rig.db.transaction() as session:
        await Repository(session).add(*rows)
        row = await session.get(Patient, patient)
        assert row is not None
        row.timezone = "Europe/London"  # the form's times are the patient's local time
        session.add(row)
    return patient


async def test_a_session_with_its_dose_is_recorded_and_drawn(
    rig: Rig, base_url: str, page: Page
) -> None:
    patient = await a_patient_with_two_scores(rig)
    await pages.sign_in_as(page, base_url, rig.accounts["ana"], NOW)
    await page.goto(f"{base_url}/patients/{patient}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Noor Castellanos")
    await expect(page.locator("svg.series-chart .session-label")).to_have_count(0)

    await page.get_by_role("link", name="Add a session").click()
    await page.get_by_label("Date and time").fill("2026-05-02T10:30")  # London, BST
    await page.get_by_label("Route (required)").select_option(label="Ketamine, intravenous (mg/kg)")
    await page.get_by_label("Dose", exact=True).fill("0.5")
    await page.get_by_role("button", name="Add the session").click()
    await page.wait_for_load_state()

    await expect(page).to_have_url(f"{base_url}/patients/{patient}?done=session_added")
    await expect(page.get_by_role("status")).to_have_text("Session added; check-ins re-planned.")
    marker = page.locator("svg.series-chart .session-label")
    await expect(marker).to_have_count(1)
    await expect(marker).to_have_text("#1 0.5 mg/kg")
    await expect(page.locator("section", has=page.locator("#sessions-heading"))).to_contain_text(
        "0.5 mg/kg"
    )
    await pages.screenshot(page, "patient")
    async with rig.db.transaction() as session:
        [row] = (await session.exec(select(TreatmentSession))).all()
    assert (row.patient_id, row.number, row.route, row.dose, row.dose_unit) == (
        patient, 1, "ketamine-iv", 0.5, "mg/kg")  # fmt: skip
    assert row.at == datetime(2026, 5, 2, 9, 30, tzinfo=UTC)  # 10:30 in London (BST)

    await page.get_by_role("link", name="Record MADRS").click()
    await page.get_by_label("MADRS total (required)").fill("22")
    await page.get_by_role("button", name="Record the MADRS").click()
    await page.wait_for_load_state()
    await expect(page).to_have_url(f"{base_url}/patients/{patient}?done=madrs_recorded")
    await expect(page.locator("svg.series-chart")).to_have_count(2)  # PHQ-9, then MADRS
    async with rig.db.transaction() as session:
        [madrs] = (await session.exec(select(Score).where(Score.instrument == "madrs"))).all()
    assert (madrs.total, madrs.rated_by, madrs.session_number) == (
        22, rig.accounts["ana"].clinician_id, 1)  # fmt: skip


async def test_a_dose_outside_the_range_is_refused_on_the_form(
    rig: Rig, base_url: str, page: Page
) -> None:
    """A total in mg typed as mg/kg: the form comes back saying why, the dose still typed,
    and nothing is stored."""
    patient = await a_patient_with_two_scores(rig)
    await pages.sign_in_as(page, base_url, rig.accounts["ana"], NOW)
    await page.goto(f"{base_url}/patients/{patient}/sessions/new")
    await page.get_by_label("Date and time").fill("2026-05-02T10:30")
    await page.get_by_label("Route (required)").select_option(label="Ketamine, intravenous (mg/kg)")
    await page.get_by_label("Dose", exact=True).fill("35")
    await page.get_by_role("button", name="Add the session").click()
    await page.wait_for_load_state()
    await expect(page.get_by_role("alert")).to_contain_text("outside 0.05-3 mg/kg")
    await expect(page.get_by_label("Dose", exact=True)).to_have_value("35")
    async with rig.db.transaction() as session:
        assert (await session.exec(select(TreatmentSession))).all() == []
