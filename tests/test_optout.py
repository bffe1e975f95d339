"""Opting out is visible to the clinician (issue 19, section 3), through the service on the
console channel and a real database: STOP raises the opted_out alert, routine normally and
urgent when the patient may be at risk; the patient's confirmation carries the crisis line;
opting back in leaves the alert for a clinician."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.app.services import Services
from bot.domain.alerts import clinician
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Checkin
from tests.test_alerting import clinic, endorse_item_9, to, wired
from tests.test_services import SimClock, rows, said


async def opened(services: Services, patient_id: int, instruments: list[str]) -> None:
    await services.asking.ask(patient_id, instruments)
    assert await services.starting.start_due() == 1


async def opt_out_alert(db: Database) -> Alert:
    (alert,) = await rows(db, Alert, Alert.rule == "opted_out")
    return alert


async def test_stop_before_any_answer_raises_a_routine_alert(db: Database) -> None:
    """STOP at the first question: today nothing tells the clinician; now a routine alert."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await opened(services, patient_id, ["phq9"])
    await services.inbox.handle_inbound(said("pat", "STOP", 1))
    assert [c.status for c in await rows(db, Checkin)] == ["cancelled"]
    alert = await opt_out_alert(db)
    assert (alert.level, alert.status) == ("routine", "open")
    assert alert.detail["how"] == "stop" and alert.detail["in_checkin"] is True
    (notice,) = await to(db, "dr-r")
    assert notice.startswith(
        "ROUTINE: P-017, stopped check-ins; no longer measured (replied STOP during a check-in)"
    )
    assert notice.endswith(f"Reply ACK {alert.code}")
    confirmation = (await to(db, "pat"))[-1]
    assert "no more check-ins" in confirmation and "988" in confirmation
    assert "Emergency: call 911." in confirmation


async def test_stop_after_item_9_endorsed_is_urgent(db: Database) -> None:
    """Item 9 = 1 (an urgent suicidality alert), then STOP at item 10: urgent, with why."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id, "1")
    await services.inbox.handle_inbound(said("pat", "stop", 9))
    alert = await opt_out_alert(db)
    assert alert.level == "urgent"
    assert alert.detail["open_serious_alert"] is True
    assert alert.detail["endorsed_within_days"] == 14
    assert (alert.detail["reached_instrument"], alert.detail["reached_item_number"]) == ("phq9", 9)
    notice = (await to(db, "dr-r"))[-1]
    assert notice.startswith("URGENT: P-017, stopped check-ins")
    assert "it had reached PHQ9 item 9" in notice and "in the last 14 days" in notice


async def test_stop_at_item_9_before_answering_it_is_urgent(db: Database) -> None:
    """Eight zeros, then STOP where item 9 is asked: no other sign, yet urgent."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await opened(services, patient_id, ["phq9"])
    for n in range(8):
        await services.inbox.handle_inbound(said("pat", "0", n))
    await services.inbox.handle_inbound(said("pat", "STOP", 8))
    alerts = {a.rule: a.level for a in await rows(db, Alert)}
    assert alerts == {"safety_item_missing": "routine", "opted_out": "urgent"}  # partial score
    alert = await opt_out_alert(db)
    assert alert.detail["open_serious_alert"] is False
    assert alert.detail["endorsed_within_days"] is None
    assert alert.detail["reached_item_number"] == 9


@pytest.mark.parametrize(("days", "level"), [(13, "urgent"), (15, "routine")])
async def test_stop_outside_a_check_in_looks_back_14_days(
    db: Database, days: int, level: str
) -> None:
    """Item 9 endorsed, its alert resolved by the clinician; STOP with nothing open N days
    later is urgent within 14 days of the endorsement, routine after."""
    services, _, clock = wired(db)
    primary, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id, "1")
    await services.inbox.handle_inbound(said("pat", "0", 9))  # item 10: the check-in ends
    assert [c.status for c in await rows(db, Checkin)] == ["completed"]
    await resolve_all(services, db, clock, primary)
    clock.now += timedelta(days=days)
    await services.inbox.handle_inbound(said("pat", "STOP", 99, clock.now))
    alert = await opt_out_alert(db)
    assert alert.level == level
    assert alert.detail["in_checkin"] is False and alert.detail["open_serious_alert"] is False


async def resolve_all(services: Services, db: Database, clock: SimClock, by: int) -> None:
    assert services.alerting is not None
    async with db.transaction() as session:
        repo = Repository(session)
        for row in await rows(db, Alert):
            loaded = await session.get(Alert, row.id)
            assert loaded is not None
            assert await services.alerting.resolve(repo, loaded, clinician(by), clock.now)


async def test_opting_back_in_leaves_the_alert_for_the_clinician(db: Database) -> None:
    """START after STOP resumes check-ins; the opted_out alert stays open, and a second
    STOP within the cool-down updates it instead of paging again."""
    services, _, clock = wired(db)
    await clinic(db)
    await services.inbox.handle_inbound(said("pat", "STOP", 1))
    await services.inbox.handle_inbound(said("pat", "START", 2))
    alert = await opt_out_alert(db)
    assert (alert.level, alert.status, alert.detail["in_checkin"]) == ("routine", "open", False)
    clock.now += timedelta(hours=1)
    await services.inbox.handle_inbound(said("pat", "STOP", 3, clock.now))
    again = await opt_out_alert(db)
    assert (again.id, again.status, again.occurrences) == (alert.id, "open", 2)
    assert len(await to(db, "dr-r")) == 1
