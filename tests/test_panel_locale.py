"""Dates and numbers on the panel in the clinic's locale (``[panel] locale``), words still
English: the filters alone, table-driven, against the strings a reader of each locale
expects (written out here, not asked of Babel); the chart's axis and dose labels; the
setting checked at load and by `config check`; and the Today and patient pages over HTTP
on SQLite and PostgreSQL in es-ES, en-US and en-GB, with the series report (the page
`checkin report` writes) still writing the dose with a point."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app.operator.config_check import check
from bot.config import Panel
from bot.config.sections import settings_from_mapping
from bot.domain.dosing import Dose
from bot.domain.errors import ConfigError
from bot.rendering.local_formats import LocalFormats
from bot.rendering.pages import Pages
from bot.rendering.series_svg import Mark, SeriesChart, SessionLine, series_svg
from bot.storage.answer_tables import Score
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, TreatmentSession
from tests.panel_rig import panel_rig
from tests.test_services import T0

NBSP, NNBSP = "\u00a0", "\u202f"  # CLDR's spaces: before "%" in es, before "AM" in en-US
NS = {"s": "http://www.w3.org/2000/svg"}
MONDAY_9 = datetime(2026, 5, 4, 9, 0, tzinfo=ZoneInfo("Europe/London"))
TUESDAY_15 = datetime(2026, 5, 5, 15, 5, tzinfo=ZoneInfo("Europe/London"))
KETAMINE = Dose("ketamine-iv", 0.5, "mg/kg")

Case = tuple[str, Callable[[LocalFormats], str], str]
CASES: list[Case] = [
    # Spain: weekday and month names in Spanish, day first, 24-hour clock, decimal comma
    ("es-ES", lambda f: f.date(MONDAY_9, "MMMMEEEEd"), "lunes, 4 de mayo"),
    ("es-ES", lambda f: f.date(MONDAY_9, "full"), "lunes, 4 de mayo de 2026"),
    ("es-ES", lambda f: f.date(MONDAY_9, "short"), "4/5/26"),
    ("es-ES", lambda f: f.time(TUESDAY_15), "15:05"),
    ("es-ES", lambda f: f.when(MONDAY_9, MONDAY_9), "9:00"),
    ("es-ES", lambda f: f.when(TUESDAY_15, MONDAY_9), "mar, 5 may, 15:05"),
    ("es-ES", lambda f: f.date_time(MONDAY_9), "4 may 2026, 9:00"),
    ("es-ES", lambda f: f.number(0.5), "0,5"),
    ("es-ES", lambda f: f.number(24.0, 1), "24,0"),
    ("es-ES", lambda f: f.number(1234.5), "1.234,5"),
    ("es-ES", lambda f: f.percent(62.4), f"62{NBSP}%"),
    ("es-ES", lambda f: f.percent(-80, signed=True), f"-80{NBSP}%"),
    ("es-ES", lambda f: f.dose(KETAMINE), "0,5 mg/kg"),
    # the United States: month before day, 12-hour clock, decimal point
    ("en-US", lambda f: f.date(MONDAY_9, "MMMMEEEEd"), "Monday, May 4"),
    ("en-US", lambda f: f.date(MONDAY_9, "short"), "5/4/26"),
    ("en-US", lambda f: f.time(TUESDAY_15), f"3:05{NNBSP}PM"),
    ("en-US", lambda f: f.when(TUESDAY_15, MONDAY_9), f"Tue, May 5, 3:05{NNBSP}PM"),
    ("en-US", lambda f: f.date_time(MONDAY_9, "full"), f"Monday, May 4, 2026, 9:00{NNBSP}AM"),
    ("en-US", lambda f: f.number(1234.5), "1,234.5"),
    ("en-US", lambda f: f.percent(20, signed=True), "+20%"),
    ("en-US", lambda f: f.percent(0.4, signed=True), "0%"),
    ("en-US", lambda f: f.dose(Dose("esketamine-in", 84.0, "mg")), "84 mg"),
    ("en-US", lambda f: f.dose(Dose("ketamine-iv", None, None)), ""),
    # Britain: day before month, 24-hour clock
    ("en-GB", lambda f: f.date(MONDAY_9, "MMMMEEEEd"), "Monday 4 May"),
    ("en-GB", lambda f: f.date(MONDAY_9, "short"), "04/05/2026"),
    ("en-GB", lambda f: f.when(TUESDAY_15, MONDAY_9), "Tue 5 May, 15:05"),
    ("en-GB", lambda f: f.when(MONDAY_9, MONDAY_9), "09:00"),
    # Mexico: Spanish names, and the 12-hour clock
    ("es-MX", lambda f: f.time(TUESDAY_15), f"3:05{NNBSP}p.m."),
    ("es-MX", lambda f: f.number(0.5), "0.5"),
]


@pytest.mark.parametrize(("locale", "written", "expected"), CASES)
def test_each_filter_writes_the_way_the_locale_does(
    locale: str, written: Callable[[LocalFormats], str], expected: str
) -> None:
    """One value, one locale, the string its readers expect."""
    assert written(LocalFormats.named(locale)) == expected


def test_the_machine_readable_dose_keeps_its_point() -> None:
    """Dose.text(), which the CLI, CSV and FHIR outputs write, is not the panel's."""
    assert KETAMINE.text() == "0.5 mg/kg"
    assert LocalFormats.named("es-ES").dose(KETAMINE) == "0,5 mg/kg"


def test_the_chart_writes_its_dates_and_doses_in_the_locale() -> None:
    """The pages' chart: the axis' first and last dates and a session's dose in es-ES;
    the drawing without formats keeps ISO dates and the point."""
    start, end = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)
    series = SeriesChart("phq9", 27, start, end, (Mark(start, 20), Mark(end, 9)),
                         (SessionLine(start + timedelta(days=2), 1, KETAMINE),))  # fmt: skip

    def texts(svg: str) -> list[str | None]:
        return [t.text for t in ET.fromstring(svg).iterfind(".//s:text", NS)][-3:]

    assert texts(Pages(locale="es-ES").chart(series, "t", "d")) == [
        "1 may 2026", "11 may 2026", "#1 0,5 mg/kg"]  # fmt: skip
    assert texts(series_svg(series, "t", "d")) == ["2026-05-01", "2026-05-11", "#1 0.5 mg/kg"]


def test_the_locale_is_checked_when_the_settings_load(tmp_path: Path) -> None:
    """en-US by default; es_ES is taken as es-ES; a name CLDR does not know is an error
    naming the key, and `config check` lists it."""
    path = tmp_path / "config.toml"
    assert settings_from_mapping({}, path).panel.locale == "en-US"
    assert settings_from_mapping({"panel": {"locale": "es_ES"}}, path).panel.locale == "es-ES"
    for wrong in ("xx-YY", "Spanish", "", 7):
        with pytest.raises(ConfigError, match=r"panel\.locale"):
            settings_from_mapping({"panel": {"locale": wrong}}, path)
    path.write_text('[panel]\nlocale = "klingon"\n')
    [problem] = check(path).problems
    assert (problem.key, "'klingon' is not a locale" in problem.problem) == ("panel.locale", True)


# ---- the pages, over HTTP -------------------------------------------------------------


@dataclass(frozen=True)
class Clinic:
    locale: str
    zone: str
    heading: str  # the Today page's date, time and zone
    due: str  # a check-in due today at 13:30 UTC
    raised: str  # an alert raised yesterday at 09:00 UTC
    dose: str
    better: str  # 20 at baseline, 9 after the session: 55 % better
    hours: str  # 24 hours after the session


CLINICS = [
    Clinic("es-ES", "Europe/Madrid", "lunes, 4 de mayo, 11:00 CEST", "15:30", "dom, 3 may, 11:00",
           "0,5 mg/kg", f"55{NBSP}% better", "24,0&nbsp;h"),
    Clinic("en-US", "America/New_York", f"Monday, May 4, 5:00{NNBSP}AM EDT", f"9:30{NNBSP}AM",
           f"Sun, May 3, 5:00{NNBSP}AM", "0.5 mg/kg", "55% better", "24.0&nbsp;h"),
    Clinic("en-GB", "Europe/London", "Monday 4 May, 10:00 BST", "14:30", "Sun 3 May, 10:00",
           "0.5 mg/kg", "55% better", "24.0&nbsp;h"),
]  # fmt: skip


async def record(db: Database, patient_id: int) -> None:
    """A session of 0.5 mg/kg two days ago, PHQ-9 20 before it and 9 a day after, a
    check-in due today at 13:30 UTC."""
    session_at = T0 - timedelta(days=2)
    rows = [
        TreatmentSession(patient_id=patient_id, number=1, kind="ketamine-iv", at=session_at,
                         route="ketamine-iv", dose=0.5, dose_unit="mg/kg"),
        Score(patient_id=patient_id, instrument="phq9", total=20, band="severe", valid=True,
              completed_at=session_at - timedelta(hours=2), session_number=0),
        Score(patient_id=patient_id, instrument="phq9", total=9, band="mild", valid=True,
              completed_at=session_at + timedelta(days=1), session_number=1,
              hours_since_session=24.0),
        Checkin(patient_id=patient_id, idempotency_key=f"due-{patient_id}", instruments=["phq9"],
                status="pending", due_at=T0 + timedelta(hours=4.5),
                expires_at=T0 + timedelta(hours=28)),
    ]  # fmt: skip
    async with db.transaction() as session:
        await Repository(session).add(*rows)  # type: ignore[arg-type]


@pytest.mark.parametrize("clinic", CLINICS, ids=[c.locale for c in CLINICS])
async def test_today_and_the_patient_page_in_the_clinics_locale(
    db: Database, clinic: Clinic
) -> None:
    """The Today page's date, a check-in's time and an alert's day; the patient page's
    dose (table and chart), change and hours; the words stay English; the series report
    (`checkin report`'s page) still writes the dose with a point."""
    async with panel_rig(db, Panel(timezone=clinic.zone, locale=clinic.locale)) as rig:
        ana = await rig.add("ana")
        pid = await rig.patient("Mara", ana.clinician_id)
        await record(db, pid)
        rig.clock.now = T0 - timedelta(days=1)
        await rig.alert(pid)
        rig.clock.now = T0
        async with rig.browser() as web:
            await rig.signed_in(web, ana)
            today = (await web.get("/")).text
            patient = (await web.get(f"/patients/{pid}")).text
            report = (await web.get(f"/patients/{pid}/report")).text
    assert f'<span class="when">{clinic.heading}</span>' in today
    assert f"<td>PHQ-9</td><td>{clinic.due}</td><td>Due</td>" in today
    assert f"raised {clinic.raised}" in today and "Alerts to act on (1)" in today
    assert f"{clinic.better} than baseline" in patient
    assert (
        f"<td>after #1</td>\n      <td>{clinic.hours}</td>\n      <td>{clinic.dose}</td>" in patient
    )
    assert f"ketamine-iv {clinic.dose}</td>" in patient  # the sessions table
    assert f"#1 {clinic.dose}</text>" in patient  # the chart's marker
    assert "Treatment sessions (1)" in patient and "Series report" in patient  # English words
    assert "0.5 mg/kg" in report and "0,5" not in report
