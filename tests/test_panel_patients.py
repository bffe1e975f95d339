"""The Patients page and the Enrol form over HTTP, on SQLite and PostgreSQL: who appears
(own, covered, admin: all; nobody else's), search and filters (a value not understood is
ignored and said so), the PHQ-9 columns and outcome badges from stored scores, a fixed
number of queries; enrolling (Telegram: the link and its QR code; SMS: a number is
required; a bad time zone; a clinician only for themselves; CSRF), a new link revoking
the old one, 404 for a patient not visible, and the sign-in redirect and headers."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html import unescape

import httpx
import pytest
import segno
from sqlmodel import select

from bot.app.conversations.enrollment import redeem
from bot.bootstrap import build
from bot.config import Clinic, Panel, Settings
from bot.config.settings import Sms, Telegram
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import AuditEvent, Checkin, EnrollmentCode, Patient, Score, TreatmentSession
from bot.web.panel.security import HEADERS
from tests.panel_rig import Rig, hidden
from tests.statements import statements
from tests.test_services import SimClock

BOT = "mbc_test_bot"


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    """The panel on a clinic with Telegram (a fixed @username: no Bot API call) and SMS
    configured; an admin, Ana, Ben (covered by Ana) and Cy."""
    clock = SimClock()
    settings = Settings(
        database_url=db.url.render_as_string(hide_password=False),
        clinic=Clinic(name="Test Clinic"),
        panel=Panel(timezone="Europe/Madrid"),
        telegram=Telegram(token="123:TEST", bot_username=BOT, api_base_url="http://127.0.0.1:9/bot"),
        sms=Sms(account_sid="AC" + "0" * 32, auth_token="t", from_number="+15005550006",
                api_base_url="http://127.0.0.1:9"),
    )  # fmt: skip
    app = build(settings, clock=clock, console=io.StringIO())
    rig = Rig(app, db, clock)
    try:
        await rig.add("boss", role="admin")
        ana = await rig.add("ana")
        await rig.add("ben", backup=ana.clinician_id)
        await rig.add("cy")
        yield rig
    finally:
        await app.close()


async def audits(db: Database, action: str) -> list[AuditEvent]:
    async with db.transaction() as session:
        statement = select(AuditEvent).where(AuditEvent.action == action)
        return list((await session.exec(statement)).all())


def names(page: str) -> list[str]:
    return [unescape(m) for m in re.findall(r'<a href="/patients/\d+">([^<]*)</a>', page)]


async def listed(rig: Rig, who: str, query: str = "") -> str:
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts[who])
        response = await web.get(f"/patients{query}")
    assert response.status_code == 200
    return response.text


async def scored(rig: Rig, patient_id: int, totals: list[int]) -> None:
    """A PHQ-9 score every 4 days from the clinic's now, the first a baseline; a ketamine
    session the day before each later one; a completed check-in for each score."""
    start = rig.clock.now - timedelta(days=4 * len(totals))
    async with rig.db.transaction() as session:
        repo = Repository(session)
        for n, total in enumerate(totals):
            day = start + timedelta(days=4 * n)
            checkin = Checkin(patient_id=patient_id, idempotency_key=f"p{patient_id}c{n}",
                              due_at=day, expires_at=day + timedelta(hours=1), status="completed")  # fmt: skip
            await repo.add(checkin)
            await repo.add(Score(checkin_id=checkin.id, patient_id=patient_id, instrument="phq9",
                                 total=total, valid=True, completed_at=day))  # fmt: skip
            if n:
                await repo.add(TreatmentSession(patient_id=patient_id, number=n, kind="ketamine",
                                                at=day - timedelta(days=1)))  # fmt: skip


async def test_each_viewer_sees_only_the_patients_they_may_see(rig: Rig) -> None:
    """Ana: hers and Ben's (she covers him), not Cy's; Cy: his own; the admin: all three by
    default, none with who=mine (an admin with no patients); one audit per view, no names."""
    ana, ben, cy = (rig.accounts[n].clinician_id for n in ("ana", "ben", "cy"))
    await rig.patient("Alma", ana)
    await rig.patient("Bruno", ben)
    await rig.patient("Cora", cy)
    assert names(await listed(rig, "ana")) == ["Alma", "Bruno"]
    assert names(await listed(rig, "cy")) == ["Cora"]
    assert names(await listed(rig, "cy", "?who=all")) == ["Cora"]  # "all" is all one may see
    assert names(await listed(rig, "boss")) == ["Alma", "Bruno", "Cora"]
    assert names(await listed(rig, "boss", "?who=mine")) == []
    events = await audits(rig.db, "panel_patients_viewed")
    assert [(e.actor, e.detail) for e in events][:2] == [
        (f"clinician:{ana}", {"count": 2}),
        (f"clinician:{cy}", {"count": 1}),
    ]
    assert all("Alma" not in str(e.detail) for e in events)


async def test_search_by_name_or_id_and_each_filter(rig: Rig) -> None:
    ana = rig.accounts["ana"].clinician_id
    alma = await rig.patient("Alma Ruiz", ana)
    await rig.patient("Bea Ruiz", ana)
    paused = await rig.patient("Carla", ana)
    async with rig.db.transaction() as session:
        row = await session.get(Patient, paused)
        assert row is not None
        row.status = "paused"
        session.add(row)
    await scored(rig, alma, [20, 15, 12, 8])  # 60 % better: response
    assert names(await listed(rig, "ana", "?q=ruiz")) == ["Alma Ruiz", "Bea Ruiz"]
    assert names(await listed(rig, "ana", "?q=ALMA")) == ["Alma Ruiz"]
    assert names(await listed(rig, "ana", f"?q={paused}")) == ["Carla"]
    assert names(await listed(rig, "ana", "?status=paused")) == ["Carla"]
    assert names(await listed(rig, "ana", "?status=active")) == ["Alma Ruiz", "Bea Ruiz"]
    assert names(await listed(rig, "ana", "?outcome=response")) == ["Alma Ruiz"]
    assert names(await listed(rig, "ana", "?outcome=remission")) == []
    assert names(await listed(rig, "ana", "?q=ruiz&status=active&outcome=response")) == [
        "Alma Ruiz"
    ]


async def test_a_responding_patient_shows_scores_bands_change_and_badges(rig: Rig) -> None:
    """Baseline 20 (severe) before four sessions, latest 4 (minimal): -80 %, early
    improvement, response and remission; 4 sessions; last check-in completed; 1 open alert."""
    ana = rig.accounts["ana"].clinician_id
    pid = await rig.patient("Dora", ana)
    await scored(rig, pid, [20, 15, 12, 8, 4])
    await rig.alert(pid)
    page = await listed(rig, "ana")
    row = re.search(rf"<tr>\s*<th scope=\"row\"><a href=\"/patients/{pid}\">.*?</tr>", page, re.S)
    assert row is not None
    cells = [re.sub(r"<[^>]+>", "", c).split() for c in re.findall(r"<td>(.*?)</td>", row.group(0))]
    _protocol, sessions, baseline, latest, change, badges, last, alerts = cells
    assert sessions == ["4"] and change == ["-80%"] and alerts == ["1"]
    assert baseline[0] == "20" and "Severe" in " ".join(baseline)
    assert latest[0] == "4" and "Minimal" in " ".join(latest)
    assert " ".join(badges) == "Early improvement Response Remission"
    assert last[-1] == "Completed"


async def test_a_stalled_patient_is_a_non_responder(rig: Rig) -> None:
    """20 at baseline, 19 after four sessions: under 20 % better after session 4."""
    pid = await rig.patient("Eli", rig.accounts["ana"].clinician_id)
    await scored(rig, pid, [20, 20, 19, 19, 19])
    page = await listed(rig, "ana", "?outcome=non_response")
    assert names(page) == ["Eli"] and "Non-response" in page


async def test_a_filter_value_not_understood_is_ignored_and_said(rig: Rig) -> None:
    await rig.patient("Alma", rig.accounts["ana"].clinician_id)
    page = await listed(rig, "ana", "?status=asleep&outcome=cured&who=%3Cb%3E")
    assert names(page) == ["Alma"]
    note = re.search(r'<p class="problem" role="status">(.*?)</p>', page)
    assert note and "whose patients, status, outcome" in note.group(1)
    assert "<b>" not in page


async def test_the_page_costs_the_same_queries_for_3_or_30_patients(rig: Rig) -> None:
    ana = rig.accounts["ana"].clinician_id
    costs = []
    for more in (3, 27):
        for n in range(more):
            pid = await rig.patient(f"P{len(costs)}-{n}", ana)
            await scored(rig, pid, [18, 9])
        async with rig.browser() as web:
            await rig.signed_in(web, rig.accounts["ana"])
            with statements(rig.app.db) as ran:
                assert (await web.get("/patients")).status_code == 200
        costs.append(len(ran))
    assert costs[0] == costs[1], costs


# ---- enrolling ------------------------------------------------------------------------


async def enrol_form(web: httpx.AsyncClient) -> str:
    page = await web.get("/patients/new")
    assert page.status_code == 200
    return hidden(page.text, "csrf_token")


def form(token: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": token, "name": "Pat Q", "channel": "telegram", "language": "es",
            "timezone": "America/New_York", "protocol": "", "phone": ""} | fields  # fmt: skip


def shown_link(page: str) -> str:
    found = re.search(r'<input id="link" class="link" value="([^"]+)" readonly>', page)
    assert found, "no link on the page"
    return unescape(found.group(1))


async def test_enrolling_on_telegram_shows_the_link_and_its_qr_code(rig: Rig) -> None:
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        token = await enrol_form(web)
        done = await web.post("/patients/new", data=form(token, clinician=str(ana.clinician_id)))
        assert done.status_code == 303
        location = done.headers["location"]
        pid = int(re.fullmatch(r"/patients/(\d+)/link", location).group(1))  # type: ignore[union-attr]
        page = await web.get(location)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    link = shown_link(page.text)
    assert link.startswith(f"https://t.me/{BOT}?start=")
    uri = re.search(
        r'<img class="qr" src="data:image/svg\+xml;base64,([^"]+)" alt="[^"]+">', page.text
    )
    assert uri, "no QR image with alt text"
    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="svg", xmldecl=False, border=2, scale=4)
    assert base64.b64decode(uri.group(1)) == out.getvalue()
    async with rig.db.transaction() as session:
        patient = await session.get(Patient, pid)
    assert patient is not None
    assert (patient.display_name, patient.language, patient.timezone, patient.clinician_id) == (
        "Pat Q", "es", "America/New_York", ana.clinician_id)  # fmt: skip
    assert [e.actor for e in await audits(rig.db, "patient_added")] == [
        f"clinician:{ana.clinician_id}"
    ]


async def test_a_clinician_enrols_for_themselves_without_choosing(rig: Rig) -> None:
    """The form offers no choice of clinician to a clinician; the patient is theirs."""
    cy = rig.accounts["cy"]
    async with rig.browser() as web:
        await rig.signed_in(web, cy)
        token = await enrol_form(web)
        data = form(token, channel="console")
        del data["phone"]
        done = await web.post("/patients/new", data=data)
        assert done.status_code == 303
        page = await web.get(done.headers["location"])
    assert "Console patients are active at once" in page.text
    async with rig.db.transaction() as session:
        rows = (await session.exec(select(Patient))).all()
    assert [(p.clinician_id, p.status) for p in rows] == [(cy.clinician_id, "active")]


async def test_sms_without_a_number_is_shown_again_naming_the_field(rig: Rig) -> None:
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        token = await enrol_form(web)
        ana = str(rig.accounts["ana"].clinician_id)
        refused = await web.post("/patients/new", data=form(token, channel="sms", clinician=ana))
        assert refused.status_code == 400
        assert 'aria-describedby="phone-problem"' in refused.text
        assert "need the patient&#39;s mobile number" in refused.text
        assert 'value="Pat Q"' in refused.text and 'value="America/New_York"' in refused.text
        assert '<option value="sms" selected>' in refused.text
        good = form(token, channel="sms", clinician=ana, phone="+1 415 555 2671")
        done = await web.post("/patients/new", data=good)
        assert done.status_code == 303
        page = await web.get(done.headers["location"])
    assert "The invitation was queued" in page.text
    async with rig.db.transaction() as session:
        rows = (await session.exec(select(Patient))).all()
    assert [(p.channel, p.address, p.status) for p in rows] == [("sms", "+14155552671", "invited")]


async def test_a_bad_time_zone_and_a_bad_number_are_refused(rig: Rig) -> None:
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        token = await enrol_form(web)
        refused = await web.post("/patients/new", data=form(token, timezone="Mars/Olympus"))
        assert refused.status_code == 400
        assert 'id="timezone-problem"' in refused.text and 'value="Mars/Olympus"' in refused.text
        bad = await web.post("/patients/new", data=form(token, channel="sms", phone="12"))
        assert bad.status_code == 400 and 'id="phone-problem"' in bad.text
        assert "Not a valid mobile number" in bad.text
    async with rig.db.transaction() as session:
        assert (await session.exec(select(Patient))).all() == []


async def test_a_clinician_cannot_enrol_for_another_clinician(rig: Rig) -> None:
    ben = str(rig.accounts["ben"].clinician_id)
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        token = await enrol_form(web)
        refused = await web.post("/patients/new", data=form(token, clinician=ben))
    assert refused.status_code == 403 and "for yourself only" in refused.text
    async with rig.db.transaction() as session:
        assert (await session.exec(select(Patient))).all() == []


async def test_enrolling_without_the_csrf_token_is_refused(rig: Rig) -> None:
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        data = form("")
        del data["csrf_token"]
        assert (await web.post("/patients/new", data=data)).status_code == 403
        assert (await web.post("/patients/new", data=form("forged"))).status_code == 403
    async with rig.db.transaction() as session:
        assert (await session.exec(select(Patient))).all() == []


async def test_a_new_link_revokes_the_old_one(rig: Rig) -> None:
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        token = await enrol_form(web)
        done = await web.post("/patients/new", data=form(token, clinician=str(ana.clinician_id)))
        first = shown_link((await web.get(done.headers["location"])).text)
        again = await web.post(done.headers["location"], data={"csrf_token": token})
        assert again.status_code == 303
        page = (await web.get(again.headers["location"])).text
        assert "earlier links no longer work" in page
        second = shown_link(page)
        forged = await web.post(done.headers["location"], data={"csrf_token": "x"})
        assert forged.status_code == 403
    assert first != second
    old, new = first.rsplit("=", 1)[1], second.rsplit("=", 1)[1]
    async with rig.db.transaction() as session:
        assert await redeem(session, old, "telegram", "chat-1", rig.clock.now) is None
        assert await redeem(session, new, "telegram", "chat-1", rig.clock.now) is not None
        codes = (await session.exec(select(EnrollmentCode))).all()
    assert len(codes) == 2
    issued = await audits(rig.db, "enrolment_link_issued")
    assert [e.actor for e in issued] == [f"clinician:{ana.clinician_id}"]


async def test_the_link_page_is_404_for_a_patient_not_visible(rig: Rig) -> None:
    theirs = await rig.patient("Cora", rig.accounts["cy"].clinician_id)
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        assert (await web.get(f"/patients/{theirs}/link")).status_code == 404
        token = hidden((await web.get("/patients/new")).text, "csrf_token")
        posted = await web.post(f"/patients/{theirs}/link", data={"csrf_token": token})
        assert posted.status_code == 404
        # a link page without the code just issued offers a new one, never the old
        mine = await rig.patient("Alma", rig.accounts["ana"].clinician_id)
        async with rig.db.transaction() as session:
            row = await session.get(Patient, mine)
            assert row is not None
            row.channel, row.status, row.address = "telegram", "invited", None
            session.add(row)
        page = await web.get(f"/patients/{mine}/link")
    assert page.status_code == 200 and 'id="link"' not in page.text
    assert f'action="/patients/{mine}/link"' in page.text


async def test_unsigned_requests_go_to_sign_in_with_the_headers(rig: Rig) -> None:
    async with rig.browser() as web:
        for path in ("/patients", "/patients/new", "/patients/1/link"):
            response = await web.get(path)
            assert response.status_code == 303 and response.headers["location"] == "/login"
            for name, value in HEADERS.items():
                assert response.headers[name] == value
        posted = await web.post("/patients/new", data={"name": "x"})
        assert posted.status_code == 303 and posted.headers["location"] == "/login"
        await rig.signed_in(web, rig.accounts["ana"])
        for path in ("/patients", "/patients/new"):
            response = await web.get(path)
            assert response.status_code == 200
            for name, value in HEADERS.items():
                assert response.headers[name] == value
            assert '<a href="/patients">Patients</a>' in response.text
