"""The Today page and its alert actions over HTTP, on SQLite and PostgreSQL: who sees
which patient's alerts and check-ins (own, backed up, admin: all; anything else 404),
most urgent first, in the viewer's time zone; acknowledge and resolve (with a reason
from the fixed list) through the existing alert actions, audited with the actor; CSRF."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlmodel import select

from bot.config import Panel
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Checkin
from tests.panel_rig import Rig, hidden, panel_rig
from tests.test_services import T0


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    async with panel_rig(db, Panel(timezone="America/New_York")) as rig:
        boss = await rig.add("boss", role="admin")
        ana = await rig.add("ana")
        await rig.add("ben", backup=ana.clinician_id)  # ana covers ben's patients
        await rig.add("cy")
        assert boss.clinician_id
        yield rig


async def alert_row(db: Database, alert_id: int) -> Alert:
    async with db.transaction() as session:
        row = await session.get(Alert, alert_id)
    assert row is not None
    return row


async def audits(db: Database, action: str) -> list[AuditEvent]:
    async with db.transaction() as session:
        statement = select(AuditEvent).where(AuditEvent.action == action)
        return list((await session.exec(statement)).all())


async def token(web: httpx.AsyncClient) -> str:
    return hidden((await web.get("/")).text, "csrf_token")


async def test_a_clinician_sees_own_and_backed_up_patients_most_urgent_first(rig: Rig) -> None:
    """Ana sees her patient's and Ben's patient's alerts (Ben is covered by her), crisis
    first, not Cy's; the admin sees all three."""
    ana, ben, cy = (rig.accounts[n].clinician_id for n in ("ana", "ben", "cy"))
    await rig.alert(await rig.patient("Ana's patient", ana), level="routine", rule="worsening")
    await rig.alert(await rig.patient("Ben's patient", ben), level="crisis", rule="suicidality")
    await rig.alert(await rig.patient("Cy's patient", cy), level="urgent")
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        page = (await web.get("/")).text
    assert "Cy&#39;s patient" not in page and "Cy's patient" not in page
    order = [m.group(1) for m in re.finditer(r'<p class="who">([^<]*)</p>', page)]
    assert order == ["Ben&#39;s patient", "Ana&#39;s patient"]
    assert (
        "Suicidal thoughts endorsed" in page and "acknowledge by 5:30\u202fAM" in page
    )  # New York, en-US
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        page = (await web.get("/")).text
    order = [m.group(1) for m in re.finditer(r'<p class="who">([^<]*)</p>', page)]
    assert order == ["Ben&#39;s patient", "Cy&#39;s patient", "Ana&#39;s patient"]
    assert [e.actor for e in await audits(rig.db, "panel_today_viewed")] == [
        f"clinician:{ana}",
        f"clinician:{rig.accounts['boss'].clinician_id}",
    ]


async def test_acknowledging_an_alert_stops_escalation_and_is_audited(rig: Rig) -> None:
    ana = rig.accounts["ana"]
    alert_id = await rig.alert(await rig.patient("P", ana.clinician_id))
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        response = await web.post(f"/alerts/{alert_id}/ack", data={"csrf_token": await token(web)})
        assert response.status_code == 303 and response.headers["location"] == "/?done=acknowledged"
        assert "Alert acknowledged." in (await web.get("/?done=acknowledged")).text
    row = await alert_row(rig.db, alert_id)
    assert row.status == "acknowledged" and row.acknowledged_by == ana.clinician_id
    assert [e.actor for e in await audits(rig.db, "AlertAcknowledged")] == [
        f"clinician:{ana.clinician_id}"
    ]


async def test_another_clinicians_alert_is_not_found(rig: Rig) -> None:
    """Cy's patient's alert: 404 for Ana (ack and resolve), and it stays open; an id that
    does not exist is 404 too."""
    alert_id = await rig.alert(await rig.patient("C", rig.accounts["cy"].clinician_id))
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        csrf = await token(web)
        ack = await web.post(f"/alerts/{alert_id}/ack", data={"csrf_token": csrf})
        resolve = await web.post(
            f"/alerts/{alert_id}/resolve", data={"csrf_token": csrf, "reason": "duplicate"}
        )
        missing = await web.post("/alerts/999999/ack", data={"csrf_token": csrf})
    assert (ack.status_code, resolve.status_code, missing.status_code) == (404, 404, 404)
    assert ack.headers["cache-control"] == "no-store"
    assert (await alert_row(rig.db, alert_id)).status == "open"


async def test_a_form_without_the_sessions_csrf_token_is_refused(rig: Rig) -> None:
    """No token, or the token of another session: 403, the alert unchanged."""
    ana = rig.accounts["ana"]
    alert_id = await rig.alert(await rig.patient("P", ana.clinician_id))
    async with rig.browser() as other:
        await rig.signed_in(other, rig.accounts["boss"])
        foreign = await token(other)
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        assert (await web.post(f"/alerts/{alert_id}/ack")).status_code == 403
        refused = await web.post(f"/alerts/{alert_id}/ack", data={"csrf_token": foreign})
        assert refused.status_code == 403
    assert (await alert_row(rig.db, alert_id)).status == "open"


async def test_resolving_takes_a_reason_from_the_list_and_audits_it(rig: Rig) -> None:
    """A crisis alert resolved by its clinician, with a listed reason (in the audit); a
    reason not in the list is 400 and changes nothing."""
    ana = rig.accounts["ana"]
    pid = await rig.patient("P", ana.clinician_id)
    alert_id = await rig.alert(pid, level="crisis", rule="suicidality")
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        csrf = await token(web)
        bad = await web.post(
            f"/alerts/{alert_id}/resolve", data={"csrf_token": csrf, "reason": "bored"}
        )
        assert bad.status_code == 400
        assert (await alert_row(rig.db, alert_id)).status == "open"
        done = await web.post(
            f"/alerts/{alert_id}/resolve", data={"csrf_token": csrf, "reason": "patient_contacted"}
        )
        assert done.headers["location"] == "/?done=resolved"
        assert "No open alerts." in (await web.get("/")).text
    row = await alert_row(rig.db, alert_id)
    assert row.status == "resolved" and row.resolved_by == f"clinician:{ana.clinician_id}"
    [event] = await audits(rig.db, "AlertResolved")
    assert (
        event.actor == f"clinician:{ana.clinician_id}"
        and event.detail["reason"] == "patient_contacted"
    )


async def test_check_ins_due_open_and_missed_today_in_the_viewers_zone(rig: Rig) -> None:
    """The viewer's day (New York): due later today, open now, missed today; a check-in
    due tomorrow and another clinician's are not shown. Times are New York times."""
    ana = rig.accounts["ana"]
    mine, theirs = (
        await rig.patient("Mine", ana.clinician_id),
        await rig.patient("Theirs", rig.accounts["cy"].clinician_id),
    )
    rows = [
        Checkin(patient_id=mine, idempotency_key="due", instruments=["phq9"], status="pending",
                due_at=T0 + timedelta(hours=3), expires_at=T0 + timedelta(hours=27)),
        Checkin(patient_id=mine, idempotency_key="open", instruments=["gad7"], status="in_progress",
                due_at=T0 - timedelta(days=1), expires_at=T0 + timedelta(hours=2)),
        Checkin(patient_id=mine, idempotency_key="missed", instruments=["side_effects"], status="expired",
                due_at=T0 - timedelta(days=1), expires_at=T0 - timedelta(hours=1)),
        Checkin(patient_id=mine, idempotency_key="tomorrow", instruments=["qids"], status="pending",
                due_at=T0 + timedelta(days=1), expires_at=T0 + timedelta(days=2)),
        Checkin(patient_id=theirs, idempotency_key="theirs", instruments=["phq9"], status="pending",
                due_at=T0 + timedelta(hours=1), expires_at=T0 + timedelta(hours=25)),
    ]  # fmt: skip
    async with rig.db.transaction() as session:
        await Repository(session).add(*rows)
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        page = (await web.get("/")).text
    assert "Check-ins due today (1)" in page and "Check-ins open now (1)" in page
    assert "Check-ins missed today (1)" in page and "Theirs" not in page and "QIDS" not in page
    assert "<td>PHQ-9</td><td>8:00\u202fAM</td><td>Due</td>" in page  # 12:00 UTC, New York
    assert "<td>Side-effect check</td>" in page and "<td>Missed</td>" in page
    assert "<script" not in page and 'aria-labelledby="alerts-heading"' in page


async def test_the_stylesheet_is_served_from_the_package(rig: Rig) -> None:
    async with rig.browser() as web:
        css = await web.get("/panel.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@media (max-width" in css.text
