"""The panel's forms that act on one patient, over HTTP on SQLite and PostgreSQL: a
treatment session added (with its route and dose, its check-ins planned), moved, dosed
and cancelled; a MADRS and a blood pressure recorded with the viewer as rater; pause,
resume and discharge. Each change is audited with the viewer as actor; a form without the
CSRF token is 403, another clinician's patient or another patient's session 404, and a
value the use case refuses is the form again (400) naming the field, with nothing stored.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel import col, select

from bot.app.operator import treatments
from bot.config import Panel
from bot.domain.dosing import read_dose
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import AuditEvent, Checkin, Patient, Score, TreatmentSession
from tests.panel_rig import Rig, hidden, panel_rig

ZONE = "America/New_York"  # May 2026: UTC-4


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    async with panel_rig(db, Panel(timezone=ZONE)) as rig:
        ana = await rig.add("ana")
        await rig.add("ben", backup=ana.clinician_id)  # ana covers ben's patients
        await rig.add("cy")
        yield rig


async def patient(rig: Rig, owner: str, protocol: str | None = None) -> int:
    async with rig.db.transaction() as session:
        row = Patient(display_name=f"{owner}'s patient", timezone=ZONE, channel="console",
                      address=f"addr-{owner}-{protocol}", status="active", protocol=protocol,
                      clinician_id=rig.accounts[owner].clinician_id)  # fmt: skip
        await Repository(session).add(row)
    assert row.id is not None
    return row.id


async def rows(db: Database, table: type, **where: object) -> list:  # type: ignore[type-arg]
    async with db.transaction() as session:
        statement = select(table).filter_by(**where).order_by(col(table.id))  # type: ignore[attr-defined]
        return list((await session.exec(statement)).all())


async def actors(db: Database, action: str) -> list[str]:
    return [e.actor for e in await rows(db, AuditEvent, action=action)]


async def form(web: httpx.AsyncClient, path: str) -> str:
    """The form page's CSRF token (the page must answer 200)."""
    page = await web.get(path)
    assert page.status_code == 200, path
    return hidden(page.text, "csrf_token")


def problem(page: httpx.Response) -> str:
    found = re.search(r'<p class="problem" role="alert" id="problem">([^<]*)</p>', page.text)
    assert found, "no problem named on the page"
    return found.group(1)


async def a_session(rig: Rig, patient_id: int, at: str = "2026-05-06T10:00") -> int:
    dose = read_dose("ketamine-iv", "0.5")
    added = await treatments.add_session(rig.db, rig.app.planner, patient_id, at, dose=dose)
    assert added.session is not None
    return added.session.id


async def test_a_new_session_stores_route_and_dose_and_plans_its_checkins(rig: Rig) -> None:
    """10:00 in New York on 6 May is 14:00 UTC; the protocol's PHQ-9 two hours before is
    planned at once; the session is audited with Ana as actor."""
    ana = rig.accounts["ana"]
    pid = await patient(rig, "ana", protocol="ketamine-iv-6")
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        page = await web.get(f"/patients/{pid}/sessions/new")
        assert '<label for="at">' in page.text and 'type="datetime-local"' in page.text
        assert "style=" not in page.text and "<script" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        data = {"csrf_token": hidden(page.text, "csrf_token"), "at": "2026-05-06T10:00",
                "route": "ketamine-iv", "dose": "0.5", "unit": "", "kind": ""}  # fmt: skip
        response = await web.post(f"/patients/{pid}/sessions/new", data=data)
    assert response.status_code == 303
    assert response.headers["location"] == f"/patients/{pid}?done=session_added"
    [row] = await rows(rig.db, TreatmentSession, patient_id=pid)
    assert (row.at, row.number, row.kind) == (
        datetime(2026, 5, 6, 14, tzinfo=UTC),
        1,
        "ketamine-iv",
    )
    assert (row.route, row.dose, row.dose_unit) == ("ketamine-iv", 0.5, "mg/kg")
    planned = {
        (c.due_at, tuple(c.instruments)) for c in await rows(rig.db, Checkin, patient_id=pid)
    }
    assert (datetime(2026, 5, 6, 12, tzinfo=UTC), ("phq9",)) in planned
    assert (datetime(2026, 5, 7, 14, tzinfo=UTC), ("side_effects", "phq9")) in planned
    assert await actors(rig.db, "treatment_added") == [f"clinician:{ana.clinician_id}"]


async def test_a_time_the_clock_skips_is_taken_when_the_gap_ends_with_a_note(rig: Rig) -> None:
    """02:30 on 14 March 2027 does not exist in New York: the session is at 03:00 EDT
    (07:00 UTC) and the audit event says so."""
    pid = await patient(rig, "ana")
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        data = {"csrf_token": await form(web, f"/patients/{pid}/sessions/new"),
                "at": "2027-03-14T02:30", "route": "esketamine-in", "dose": "84"}  # fmt: skip
        response = await web.post(f"/patients/{pid}/sessions/new", data=data)
    assert response.headers["location"] == f"/patients/{pid}?done=session_added"
    [row] = await rows(rig.db, TreatmentSession, patient_id=pid)
    assert row.at == datetime(2027, 3, 14, 7, tzinfo=UTC) and row.dose == 84.0
    [event] = await rows(rig.db, AuditEvent, action="treatment_added")
    assert "does not exist in America/New_York" in event.detail["note"]


async def test_a_refused_value_shows_the_form_again_naming_the_field(rig: Rig) -> None:
    """35 mg/kg of IV ketamine, an unreadable time, MADRS 61, a systolic of 310: each is
    400 with the field named and the typed value kept, and nothing is stored."""
    pid = await patient(rig, "ana")
    one = f"/patients/{pid}"
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        token = await form(web, one + "/sessions/new")
        session = {"csrf_token": token, "at": "2026-05-06T10:00", "route": "ketamine-iv",
                   "dose": "35", "unit": "", "kind": ""}  # fmt: skip
        dose = await web.post(one + "/sessions/new", data=session)
        when = await web.post(one + "/sessions/new", data=session | {"dose": "", "at": "soon"})
        madrs = await web.post(
            one + "/measures/madrs", data={"csrf_token": token, "total": "61", "at": ""}
        )
        bp = {"csrf_token": token, "systolic": "310", "diastolic": "20", "point": "pre", "at": ""}
        pressure = await web.post(one + "/measures/bp", data=bp)
        words = await web.post(
            one + "/measures/madrs", data={"csrf_token": token, "total": "ten", "at": ""}
        )
    assert [r.status_code for r in (dose, when, madrs, pressure, words)] == [400] * 5
    assert problem(dose).startswith("Dose: 35 mg/kg is outside 0.05-3 mg/kg for ketamine-iv")
    assert 'name="dose" value="35"' in dose.text
    assert problem(when).startswith("Date and time: not a date and time")
    assert 'name="at" value="soon"' in when.text
    assert problem(madrs) == "MADRS total: 61 is not a MADRS total (0 to 60)."
    assert problem(pressure) == "Systolic pressure: 310 mmHg is not plausible."
    assert 'name="diastolic" value="20"' in pressure.text
    assert problem(words) == "MADRS total must be a whole number."
    assert await rows(rig.db, TreatmentSession, patient_id=pid) == []
    assert await rows(rig.db, Score, patient_id=pid) == []


async def test_a_session_is_moved_dosed_and_cancelled(rig: Rig) -> None:
    """Each through its form, audited with the viewer; a second cancellation is
    'unchanged'. Ben's patient: Ana acts as his backup."""
    ana = rig.accounts["ana"]
    pid = await patient(rig, "ben", protocol="ketamine-iv-6")
    sid = await a_session(rig, pid)
    base = f"/patients/{pid}/sessions/{sid}"
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        token = await form(web, base + "/move")
        moved = await web.post(base + "/move", data={"csrf_token": token, "at": "2026-05-07T09:30"})
        dose_page = await web.get(base + "/dose")
        assert 'name="dose" value="0.5"' in dose_page.text
        dosed = await web.post(base + "/dose", data={"csrf_token": token, "route": "esketamine-in",
                                                      "dose": "56", "unit": ""})  # fmt: skip
        confirm = await web.get(base + "/cancel")
        assert "Cancel session #1 on Thursday, May 7, 2026, 9:30\u202fAM EDT" in confirm.text
        cancelled = await web.post(base + "/cancel", data={"csrf_token": token})
        again = await web.post(base + "/cancel", data={"csrf_token": token})
        late = await web.post(base + "/move", data={"csrf_token": token, "at": "2026-05-10T09:00"})
    assert [r.headers["location"].split("?")[1] for r in (moved, dosed, cancelled, again, late)] == [
        "done=session_moved", "done=dose_recorded", "done=session_cancelled", "done=unchanged",
        "done=unchanged",
    ]  # fmt: skip
    [row] = await rows(rig.db, TreatmentSession, patient_id=pid)
    assert row.at == datetime(2026, 5, 7, 13, 30, tzinfo=UTC)
    assert (row.route, row.dose, row.dose_unit) == ("esketamine-in", 56.0, "mg")
    assert row.cancelled_at == rig.clock.now
    pending = [c for c in await rows(rig.db, Checkin, patient_id=pid) if c.status == "pending"]
    assert all(c.due_at.date() != datetime(2026, 5, 8).date() for c in pending)  # +24 h gone
    me = f"clinician:{ana.clinician_id}"
    for action in ("treatment_moved", "treatment_dose_set", "treatment_cancelled"):
        assert await actors(rig.db, action) == [me], action


async def test_measures_are_rated_by_the_viewer(rig: Rig) -> None:
    """MADRS 30 and a pre-dose 150/95: stored as scores rated by Ana, at the typed local
    time (or now), audited with her as actor (the value never in the audit)."""
    ana = rig.accounts["ana"]
    pid = await patient(rig, "ana")
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        token = await form(web, f"/patients/{pid}/measures/madrs")
        assert 'value="2026-05-04T05:00"' in (await web.get(f"/patients/{pid}/measures/bp")).text
        madrs = await web.post(f"/patients/{pid}/measures/madrs",
                               data={"csrf_token": token, "total": "30", "at": "2026-05-04T04:00"})  # fmt: skip
        bp = {"csrf_token": token, "systolic": "150", "diastolic": "95", "point": "pre", "at": ""}
        pressure = await web.post(f"/patients/{pid}/measures/bp", data=bp)
    assert madrs.headers["location"] == f"/patients/{pid}?done=madrs_recorded"
    assert pressure.headers["location"] == f"/patients/{pid}?done=bp_recorded"
    first, second = await rows(rig.db, Score, patient_id=pid)
    assert (first.instrument, first.total, first.band, first.rated_by) == (
        "madrs", 30, "moderate", ana.clinician_id,
    )  # fmt: skip
    assert first.completed_at == datetime(2026, 5, 4, 8, tzinfo=UTC)
    assert (second.instrument, second.components, second.time_point) == (
        "blood_pressure", {"systolic": 150, "diastolic": 95}, "pre",
    )  # fmt: skip
    assert second.rated_by == ana.clinician_id and second.completed_at == rig.clock.now
    assert "bp_elevated_pre" in second.flags
    events = await rows(rig.db, AuditEvent, action="measure_recorded")
    assert [e.actor for e in events] == [f"clinician:{ana.clinician_id}"] * 2
    assert all("150" not in str(e.detail) and "30" not in str(e.detail) for e in events)


async def test_pause_resume_and_discharge(rig: Rig) -> None:
    """Pause, pause again (unchanged), resume, discharge without the confirmation (400,
    still active), with it (discharged); each change audited with the viewer."""
    ana = rig.accounts["ana"]
    pid = await patient(rig, "ana")
    path = f"/patients/{pid}/status"
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        page = await web.get(path)
        assert "Status now: <strong>Active</strong>" in page.text
        token = hidden(page.text, "csrf_token")
        steps = [await web.post(path, data={"csrf_token": token, "action": a})
                 for a in ("pause", "pause", "resume")]  # fmt: skip
        unconfirmed = await web.post(path, data={"csrf_token": token, "action": "discharge"})
        assert unconfirmed.status_code == 400
        assert problem(unconfirmed) == "Confirmation: tick the box to confirm the discharge."
        assert (await rows(rig.db, Patient, id=pid))[0].status == "active"
        discharged = await web.post(
            path, data={"csrf_token": token, "action": "discharge", "confirm": "yes"}
        )
    assert [r.headers["location"].split("?")[1] for r in (*steps, discharged)] == [
        "done=paused", "done=unchanged", "done=resumed", "done=discharged",
    ]  # fmt: skip
    [row] = await rows(rig.db, Patient, id=pid)
    assert row.status == "discharged" and row.discharged_at == rig.clock.now
    me = f"clinician:{ana.clinician_id}"
    assert await actors(rig.db, "patient_paused") == [me]
    assert await actors(rig.db, "patient_resumed") == [me]
    assert await actors(rig.db, "discharged") == [me]


def every_form(pid: int, sid: int) -> list[tuple[str, dict[str, str]]]:
    """Each POST with values that would succeed."""
    one, session = f"/patients/{pid}", f"/patients/{pid}/sessions/{sid}"
    return [
        (one + "/sessions/new", {"at": "2026-05-08T10:00", "route": "ketamine-iv", "dose": "0.5"}),
        (session + "/move", {"at": "2026-05-09T10:00"}),
        (session + "/dose", {"route": "ketamine-iv", "dose": "0.75"}),
        (session + "/cancel", {}),
        (one + "/measures/madrs", {"total": "20"}),
        (one + "/measures/bp", {"systolic": "120", "diastolic": "80", "point": "pre"}),
        (one + "/status", {"action": "discharge", "confirm": "yes"}),
    ]


async def assert_untouched(rig: Rig, pid: int, sid: int) -> None:
    [session] = await rows(rig.db, TreatmentSession, patient_id=pid)
    assert session.id == sid and session.cancelled_at is None
    assert session.at == datetime(2026, 5, 6, 14, tzinfo=UTC) and session.dose == 0.5
    assert await rows(rig.db, Score, patient_id=pid) == []
    assert (await rows(rig.db, Patient, id=pid))[0].status == "active"


async def test_another_clinicians_patient_is_not_found(rig: Rig) -> None:
    """Cy's patient: every form and every POST is 404 for Ana, nothing changes."""
    pid = await patient(rig, "cy")
    sid = await a_session(rig, pid)
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        token = hidden((await web.get("/")).text, "csrf_token")
        for path, data in every_form(pid, sid):
            assert (await web.get(path)).status_code == 404, path
            response = await web.post(path, data=data | {"csrf_token": token})
            assert response.status_code == 404, path
    await assert_untouched(rig, pid, sid)


async def test_a_session_of_another_patient_is_not_found(rig: Rig) -> None:
    """Ana's two patients: the second one's session under the first one's address."""
    mine, other = await patient(rig, "ana"), await patient(rig, "ben")
    sid = await a_session(rig, other)
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        token = hidden((await web.get("/")).text, "csrf_token")
        for path, data in every_form(mine, sid)[1:4]:
            assert (await web.get(path)).status_code == 404, path
            response = await web.post(path, data=data | {"csrf_token": token})
            assert response.status_code == 404, path
    await assert_untouched(rig, other, sid)


async def test_a_form_without_the_csrf_token_is_refused(rig: Rig) -> None:
    """Every POST without its token, or with another session's: 403, nothing changes."""
    pid = await patient(rig, "ana")
    sid = await a_session(rig, pid)
    async with rig.browser() as other:
        await rig.signed_in(other, rig.accounts["cy"])
        foreign = hidden((await other.get("/")).text, "csrf_token")
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        for path, data in every_form(pid, sid):
            assert (await web.post(path, data=data)).status_code == 403, path
            refused = await web.post(path, data=data | {"csrf_token": foreign})
            assert refused.status_code == 403, path
    await assert_untouched(rig, pid, sid)


async def test_every_form_labels_its_fields_and_obeys_the_csp(rig: Rig) -> None:
    """Each GET is a page whose every visible field has a <label for>, with no inline
    style or script (the CSP forbids them), posting back to its own address; each view of
    a form (it shows the patient) is audited with the viewer as actor."""
    pid = await patient(rig, "ana")
    sid = await a_session(rig, pid)
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        for path, _ in every_form(pid, sid):
            page = await web.get(path)
            assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
            assert "style=" not in page.text and "<script" not in page.text, path
            assert f'action="{path}"' in page.text, path
            fields = re.findall(
                r'<(?:input|select)(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', page.text
            )
            labels = set(re.findall(r'<label for="([^"]+)"', page.text))
            assert (fields or path.endswith("/cancel")) and set(fields) <= labels, path
    ana = f"clinician:{rig.accounts['ana'].clinician_id}"
    assert await actors(rig.db, "panel_patient_form_viewed") == [ana] * len(every_form(pid, sid))
