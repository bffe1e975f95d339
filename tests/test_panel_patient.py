"""A patient's page on the panel over HTTP, on SQLite and PostgreSQL: who may see it (own,
backed up, admin; anything else 404, no session /login), the header and outcome badges,
the series chart inline (a marker per held session with its dose, a point per PHQ-9
score where its time and total put it, no inline style), every score with its session,
hours since and that session's dose, sessions with their action links, alerts,
check-ins, side-effect answers; the series report and the FHIR Bundle of that patient
only; every read audited with the viewer as actor."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.config import Panel
from bot.rendering import series_svg as svg
from bot.storage.answer_tables import Answer, Score
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import AuditEvent, Checkin, TreatmentSession
from tests.panel_rig import Rig, panel_rig
from tests.statements import statements
from tests.test_services import T0

NS = {"s": "http://www.w3.org/2000/svg"}
DAY = timedelta(days=1)
PHQ9 = ((T0, 21, 0, None), (T0 + 2 * DAY, 15, 1, 24.0),
        (T0 + 5 * DAY, 12, 2, 24.0), (T0 + 12 * DAY, 8, 4, 24.0))  # fmt: skip
SESSIONS = (  # number, days after T0, route, dose, cancelled
    (1, 1, "ketamine-iv", 0.5, False),
    (2, 3, "ketamine-iv", 0.75, True),
    (2, 4, "ketamine-iv", 0.5, False),
    (3, 8, "ketamine-iv", None, False),
    (4, 11, "esketamine-in", 84.0, False),
)


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    async with panel_rig(db, Panel(timezone="America/New_York")) as rig:
        await rig.add("boss", role="admin")
        ana = await rig.add("ana")
        await rig.add("ben", backup=ana.clinician_id)  # ana covers ben's patients
        await rig.add("cy")
        yield rig


async def series(rig: Rig, patient_id: int) -> None:
    """Five sessions (one cancelled), four PHQ-9 scores, two MADRS ratings by Ana, a
    pre-dose blood pressure, a side-effect check, two alerts."""
    ana = rig.accounts["ana"].clinician_id
    rows: list[object] = []
    for number, days, route, dose, cancelled in SESSIONS:
        unit = None if dose is None else ("mg" if route == "esketamine-in" else "mg/kg")
        rows.append(TreatmentSession(patient_id=patient_id, number=number, kind=route,
                                     at=T0 + days * DAY, route=route, dose=dose, dose_unit=unit,
                                     cancelled_at=T0 if cancelled else None))  # fmt: skip
    for at, total, number, hours in PHQ9:
        band = "severe" if total >= 20 else "moderately_severe" if total >= 15 else "moderate"
        rows.append(Score(patient_id=patient_id, instrument="phq9", total=total,
                          band=band if total >= 10 else "mild", valid=True, completed_at=at,
                          session_number=number, hours_since_session=hours))  # fmt: skip
    rows += [
        Score(patient_id=patient_id, instrument="madrs", total=30, band="moderate", valid=True,
              completed_at=T0, session_number=0, rated_by=ana),
        Score(patient_id=patient_id, instrument="madrs", total=14, band="mild", valid=True,
              completed_at=T0 + 12 * DAY, session_number=4, hours_since_session=24.0, rated_by=ana),
        Score(patient_id=patient_id, instrument="blood_pressure", valid=True,
              completed_at=T0 + 11 * DAY - timedelta(minutes=30), session_number=3,
              hours_since_session=71.5, rated_by=ana, time_point="pre",
              components={"systolic": 150, "diastolic": 95}, flags=["bp_elevated_pre"]),
        Checkin(patient_id=patient_id, idempotency_key=f"se-{patient_id}", status="completed",
                instruments=["side_effects"], due_at=T0 + 12 * DAY, expires_at=T0 + 13 * DAY),
    ]  # fmt: skip
    async with rig.db.transaction() as session:
        await Repository(session).add(*rows)  # type: ignore[arg-type]
        checkin = rows[-1]
        assert isinstance(checkin, Checkin) and checkin.id is not None
        await Repository(session).add(
            Answer(checkin_id=checkin.id, item_key="side_effects.red_flags", instrument="side_effects",
                   value_int=1, raw_text="yes", answered_at=T0 + 12 * DAY),
        )  # fmt: skip
    await rig.alert(patient_id, level="routine", rule="worsening")
    rig.clock.now += timedelta(minutes=5)
    await rig.alert(patient_id, level="crisis", rule="side_effect_red_flag", code=f"X{patient_id}")


async def audits(db: Database, action: str) -> list[AuditEvent]:
    async with db.transaction() as session:
        statement = select(AuditEvent).where(AuditEvent.action == action)
        return list((await session.exec(statement)).all())


def chart_of(page: str, key: str) -> ET.Element:
    found = re.search(rf'<svg [^>]*aria-labelledby="chart-{key}-title.*?</svg>', page, re.DOTALL)
    assert found, f"no {key} chart in the page"
    return ET.fromstring(found.group(0))


async def test_the_page_draws_the_series_and_lists_every_score_with_its_sessions_dose(
    rig: Rig,
) -> None:
    ana = rig.accounts["ana"]
    pid = await rig.patient("Mara Quinn", ana.clinician_id)
    await series(rig, pid)
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        response = await web.get(f"/patients/{pid}")
    page = response.text
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert "style-src 'self'" in response.headers["content-security-policy"]
    assert "style=" not in page and "<style" not in page and "<script" not in page
    phq9 = chart_of(page, "phq9")
    assert phq9.get("role") == "img"
    assert phq9.findtext("s:title", namespaces=NS) == "PHQ-9 over the treatment series"
    assert (phq9.findtext("s:desc", namespaces=NS) or "").startswith(
        "PHQ-9 from 21 at baseline to 8 after session 4;"
    )
    labels = [t.text for t in phq9.iterfind(".//s:text[@class='session-label']", NS)]
    assert labels == ["#1 0.5 mg/kg", "#2 0.5 mg/kg", "#3", "#4 84 mg"]  # not the cancelled
    # the span is every drawn moment (T0 to T0 + 12 days) with 4 % each side
    start, length = T0 - 0.48 * DAY, 12.96 * DAY
    expected = [(round(svg.LEFT + (at - start) / length * svg.PLOT_WIDTH, 1),
                 round(svg.TOP + svg.PLOT_HEIGHT * (1 - total / 27), 1))
                for at, total, _, _ in PHQ9]  # fmt: skip
    points = [(float(c.get("cx", "")), float(c.get("cy", "")))
              for c in phq9.iterfind(".//s:circle[@class='score']", NS)]  # fmt: skip
    assert points == expected
    madrs = chart_of(page, "madrs")
    assert len(list(madrs.iterfind(".//s:circle[@class='score']", NS))) == 2
    # outcome badges, from the domain's assessment
    assert (
        "baseline 21 (severe)" in page
        and "latest 8 (mild)" in page
        and "62% better" in page  # en-US
    )
    badges = re.findall(r'<li class="badge badge-([a-z_]+)">', page)
    assert badges == [
        "response",
        "reliable_improvement",
        "early_improvement",
        "response",
        "no_early_improvement",
    ]  # PHQ-9, then MADRS (no rating by session 2)
    # the scores table: session, hours since, the held session's dose (not the cancelled one's)
    rows = re.findall(r"<tr>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>[^<]*</td>"
                      r"\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", page)  # fmt: skip
    assert ("PHQ-9", "12", "after #2", "24.0&nbsp;h", "0.5 mg/kg") in rows
    assert ("PHQ-9", "8", "after #4", "24.0&nbsp;h", "84 mg") in rows
    assert (
        "Blood pressure (pre-dose)",
        "150/95",
        "after #3",
        "71.5&nbsp;h",
        "not recorded",
    ) in rows
    assert ("PHQ-9", "21", "before", "&ndash;", "–") in rows
    assert "Dr ana" in page and "bp_elevated_pre" in page
    # sessions with their links, the cancelled one marked; alerts newest first; side effects
    assert f'href="/patients/{pid}/sessions/new"' in page and "(cancelled)" in page
    assert page.count(f'href="/patients/{pid}/sessions/') == 1 + 3 * 4  # none on the cancelled
    for link in ("measures/madrs", "measures/bp", "status", "report", "fhir.json"):
        assert f'href="/patients/{pid}/{link}"' in page
    alerts = re.findall(r'<li class="alert level-([a-z]+)">', page)
    assert alerts == ["crisis", "routine"]
    assert "Any red-flag symptom" in page and "Yes <strong>(flagged)</strong>" in page
    assert "Side-effect check" in page
    [event] = await audits(rig.db, "panel_patient_viewed")
    assert (event.actor, event.subject) == (f"clinician:{ana.clinician_id}", f"patient:{pid}")


async def test_who_may_see_a_patient_and_the_files_it_links_to(rig: Rig) -> None:
    """Cy's patient: 404 for Ana on the page, the report and the export; Ben's patient
    (Ana covers Ben): seen; the admin sees Cy's; without a session: /login."""
    cys = await rig.patient("Cy's patient", rig.accounts["cy"].clinician_id)
    bens = await rig.patient("Ben's patient", rig.accounts["ben"].clinician_id)
    paths = ("", "/report", "/fhir.json")
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        hidden = [await web.get(f"/patients/{cys}{p}") for p in paths]
        missing = await web.get("/patients/999999")
        covered = await web.get(f"/patients/{bens}")
    assert [r.status_code for r in hidden] == [404, 404, 404] and missing.status_code == 404
    assert all(r.headers["cache-control"] == "no-store" for r in hidden)
    assert "Cy&#39;s patient" not in hidden[0].text
    assert covered.status_code == 200 and "Ben&#39;s patient" in covered.text
    assert "No PHQ-9 scores to draw." in covered.text and "<svg" not in covered.text
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        assert (await web.get(f"/patients/{cys}")).status_code == 200
    async with rig.browser() as web:
        for p in paths:
            gone = await web.get(f"/patients/{cys}{p}")
            assert gone.status_code == 303 and gone.headers["location"] == "/login"
    assert not await audits(rig.db, "report_viewed") and not await audits(rig.db, "exported")


async def test_done_messages_are_shown_for_known_keys_only(rig: Rig) -> None:
    ana = rig.accounts["ana"]
    pid = await rig.patient("P", ana.clinician_id)
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        known = (await web.get(f"/patients/{pid}?done=dose_recorded")).text
        unknown = (await web.get(f"/patients/{pid}?done=<b>hi</b>")).text
    assert '<p class="done" role="status">Dose recorded.</p>' in known
    assert 'class="done"' not in unknown and "hi</b>" not in unknown


async def test_the_series_report_is_that_patients_and_its_style_only(rig: Rig) -> None:
    """The report's own stylesheet is allowed by its hash and nothing else inline; the
    other patient is not in it; the reading is audited with Ana as actor."""
    ana = rig.accounts["ana"]
    pid = await rig.patient("Mara Quinn", ana.clinician_id)
    other = await rig.patient("Otto Other", ana.clinician_id)
    await series(rig, pid)
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        response = await web.get(f"/patients/{pid}/report")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/]+=*';", policy)
    assert "unsafe-inline" not in policy and response.headers["cache-control"] == "no-store"
    assert "Series report: Mara Quinn" in response.text and "Otto Other" not in response.text
    assert "data:image/png;base64," in response.text
    [event] = await audits(rig.db, "report_viewed")
    assert (event.actor, event.subject) == (f"clinician:{ana.clinician_id}", f"patient:{pid}")
    assert other


async def test_the_fhir_export_is_that_patients_bundle_as_an_attachment(rig: Rig) -> None:
    ana = rig.accounts["ana"]
    pid = await rig.patient("Mara Quinn", ana.clinician_id)
    other = await rig.patient("Otto Other", ana.clinician_id)
    await series(rig, pid)
    await series(rig, other)
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        response = await web.get(f"/patients/{pid}/fhir.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="patient-{pid}-fhir.json"'
    bundle = json.loads(response.content)
    assert bundle["resourceType"] == "Bundle"
    subjects = {e["resource"]["subject"]["identifier"]["value"] for e in bundle["entry"]}
    assert subjects == {str(pid)}
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert "Observation" in kinds and "Mara" not in response.text  # pseudonymous
    [event] = await audits(rig.db, "exported")
    assert event.actor == f"clinician:{ana.clinician_id}" and event.subject == f"patient:{pid}"
    assert event.detail == {"format": "fhir", "identifiers": False}


async def test_the_page_costs_the_same_queries_for_an_empty_or_a_full_record(rig: Rig) -> None:
    """A patient with nothing yet and one with sessions, scores, ratings, answers and
    alerts: the same statements, however many rows each returns."""
    ana = rig.accounts["ana"]
    empty = await rig.patient("New", ana.clinician_id)
    full = await rig.patient("Mara Quinn", ana.clinician_id)
    await series(rig, full)
    costs = []
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        await web.get("/")  # the session's first request writes its last_seen_at
        for pid in (empty, full):
            with statements(rig.app.db) as ran:
                assert (await web.get(f"/patients/{pid}")).status_code == 200
            costs.append(len(ran))
    assert costs[0] == costs[1] and costs[0] <= 14, costs
