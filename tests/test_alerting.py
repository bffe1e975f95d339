"""Alerts through the service: an endorsed item 9 reaches the clinician in the same
transaction as the answer, escalates on a controllable clock, and stops at ACK."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from bot.app.alerts import alerting
from bot.app.alerts.alerting import Alerting
from bot.app.conversations.inbox import INBOUND_ATTEMPTS, RECOVERY_GRACE
from bot.app.outbox.delivery import Deliverer
from bot.app.services import Services
from bot.channels.console import ConsoleChannel
from bot.domain import events as ev
from bot.domain.alerts import DEFAULT_RULES
from bot.rendering.renderer import LANGUAGES, Renderer
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Clinician, OutboundMessage, Patient
from tests.test_services import CATALOG, CLINIC, T0, SimClock, rows, said, unanswerable_check_in

RENDERER = Renderer(CATALOG, CLINIC)


def wired(db: Database) -> tuple[Services, Deliverer, SimClock]:
    clock = SimClock(T0)
    services = Services.create(
        db, CATALOG, RENDERER, CLINIC, clock, alerting=Alerting(CATALOG, DEFAULT_RULES, RENDERER)
    )
    deliverer = Deliverer(db, {"console": ConsoleChannel(io.StringIO())}, clock)
    return services, deliverer, clock


async def clinic(db: Database) -> tuple[int, int, int]:
    """A primary clinician with a backup, and their patient (console)."""
    async with db.transaction() as session:
        repo = Repository(session)
        backup = Clinician(display_name="Dr. Backup", channel="console", address="dr-b")
        await repo.add(backup)
        primary = Clinician(
            display_name="Dr. Rao", channel="console", address="dr-r", backup_clinician_id=backup.id
        )
        await repo.add(primary)
        patient = Patient(
            display_name="P-017", timezone="UTC", channel="console", address="pat", status="active",
            clinician_id=primary.id,
        )  # fmt: skip
        await repo.add(patient)
    assert primary.id and backup.id and patient.id
    return primary.id, backup.id, patient.id


async def to(db: Database, address: str) -> list[str]:
    # addresses are encrypted (never compared in SQL): filtered here, in order
    return [m.body for m in await rows(db, OutboundMessage) if m.address == address]


async def endorse_item_9(services: Services, patient_id: int, value: str = "2") -> None:
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    for n in range(8):
        await services.inbox.handle_inbound(said("pat", "0", n))
    await services.inbox.handle_inbound(said("pat", value, 8))


async def test_item_9_alerts_the_clinician_with_numbers_only(db: Database) -> None:
    """Item 9 = 2: crisis resources to the patient and a crisis alert to the clinician at once."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id)
    (alert,) = await rows(db, Alert)
    assert (alert.rule, alert.level, alert.status) == ("suicidality", "crisis", "open")
    (notice,) = await to(db, "dr-r")
    assert notice.startswith("CRISIS: P-017, suicidal thoughts endorsed (PHQ9, item 9 = 2)")
    assert notice.endswith(f"Reply ACK {alert.code}")
    assert "better off dead" not in notice
    assert any("988" in body for body in await to(db, "pat"))


async def test_crisis_message_and_alert_are_claimed_before_routine_traffic(
    db: Database,
) -> None:
    """Priorities as queued: the crisis message and the clinician's alert are urgent, the
    rest of the turn is a reply, the scheduled opening of the check-in is routine."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id)
    queued = await rows(db, OutboundMessage)
    by_intent = {(m.payload["intent"], m.priority) for m in queued}
    assert ("CrisisResources", outbox.URGENT) in by_intent
    assert ("AlertNotice", outbox.URGENT) in by_intent
    assert {p for i, p in by_intent if i in ("Answered", "Ask")} == {outbox.REPLY, outbox.ROUTINE}
    first_ask = min((m for m in queued if m.payload["intent"] == "Ask"), key=lambda m: m.id or 0)
    assert first_ask.priority == outbox.ROUTINE  # sent by the scheduler, not a reply
    assert all(m.priority == outbox.REPLY for m in queued if m.payload["intent"] == "Answered")


async def test_escalation_to_backup_then_both_until_ack(db: Database) -> None:
    """Unacknowledged past 15 minutes: the backup; then both every 15 minutes; ACK stops it."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id)
    (alert,) = await rows(db, Alert)
    clock.now += timedelta(minutes=10)
    assert await services.escalation.escalate_due() == 0
    clock.now += timedelta(minutes=6)
    assert await services.escalation.escalate_due() == 1
    assert len(await to(db, "dr-b")) == 1
    clock.now += timedelta(minutes=15)
    assert await services.escalation.escalate_due() == 1
    assert (len(await to(db, "dr-r")), len(await to(db, "dr-b"))) == (2, 2)
    await services.inbox.handle_inbound(said("dr-r", f"ack {alert.code.lower()}", 99, clock.now))
    assert (await to(db, "dr-r"))[-1] == f"Acknowledged {alert.code}. Reminders for it stop."
    clock.now += timedelta(hours=2)
    assert await services.escalation.escalate_due() == 0
    (acked,) = await rows(db, Alert)
    assert acked.status == "acknowledged" and acked.acknowledged_by is not None


async def escalations(db: Database) -> int:
    return len(await rows(db, AuditEvent, col(AuditEvent.action) == "AlertEscalated"))


@pytest.mark.postgres
async def test_an_alert_locked_elsewhere_is_left_for_the_next_tick(pg_db: Database) -> None:
    """PostgreSQL: an alert past its deadline whose row another transaction holds (another
    worker escalating it, a clinician acknowledging it) is skipped at once, not waited
    for; the next pass, once that transaction has ended, escalates it once."""
    services, _, clock = wired(pg_db)
    _, _, patient_id = await clinic(pg_db)
    await endorse_item_9(services, patient_id)
    (alert,) = await rows(pg_db, Alert)
    clock.now += timedelta(minutes=16)
    async with pg_db.transaction() as other:
        locking = select(Alert).where(Alert.id == alert.id).with_for_update()
        assert (await other.exec(locking)).first() is not None
        # bounded: a pass that waited for the lock would hang here until the lock went
        assert await asyncio.wait_for(services.escalation.escalate_due(), 5) == 0
    (untouched,) = await rows(pg_db, Alert)
    assert untouched.escalation_count == 0 and await to(pg_db, "dr-b") == []
    assert await services.escalation.escalate_due() == 1
    assert await services.escalation.escalate_due() == 0
    (escalated,) = await rows(pg_db, Alert)
    assert escalated.escalation_count == 1 and len(await to(pg_db, "dr-b")) == 1
    assert await escalations(pg_db) == 1


@pytest.mark.postgres
async def test_two_passes_at_once_escalate_an_alert_once(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: two workers' ticks at the same moment. The first pass is held after
    it has read the due alerts (its patient's clinician is looked up only once the test
    lets it) while the second runs to its end: the alert is escalated once, by one of
    them; the backup is told once. (Its notice alone would not show a double: both passes
    would queue it under the same key, ``alert{id}:1:{occurrences}``, and the outbox keeps
    one; the passes' counts and the audit do.)"""
    services, _, clock = wired(pg_db)
    _, _, patient_id = await clinic(pg_db)
    await endorse_item_9(services, patient_id)
    clock.now += timedelta(minutes=16)
    read, go = asyncio.Event(), asyncio.Event()
    looked_up = alerting.primary_of

    async def held_once(*args: Any) -> int | None:
        if not read.is_set():  # the first pass only: it has read its rows by now
            read.set()
            await go.wait()
        return await looked_up(*args)

    monkeypatch.setattr(alerting, "primary_of", held_once)
    first = asyncio.create_task(services.escalation.escalate_due())
    await asyncio.wait_for(read.wait(), 5)
    second = await asyncio.wait_for(services.escalation.escalate_due(), 5)
    go.set()
    assert await asyncio.wait_for(first, 5) + second == 1
    (alert,) = await rows(pg_db, Alert)
    assert alert.escalation_count == 1 and await escalations(pg_db) == 1
    assert len(await to(pg_db, "dr-b")) == 1


async def test_repeats_within_the_cool_down_raise_one_alert(db: Database) -> None:
    """Item 9 endorsed again in a second check-in soon after updates the one open alert."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id, "1")
    await services.inbox.handle_inbound(said("pat", "0", 9))  # the difficulty item: done
    clock.now += timedelta(minutes=20)
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    for n in range(8):
        await services.inbox.handle_inbound(said("pat", "0", 20 + n, clock.now))
    await services.inbox.handle_inbound(said("pat", "1", 28, clock.now))
    alerts = await rows(db, Alert, Alert.rule == "suicidality")
    assert len(alerts) == 1 and alerts[0].occurrences == 2


async def test_an_unknown_code_is_answered_plainly(db: Database) -> None:
    """A clinician's ACK with a wrong code is told so; other text gets the command list."""
    services, _, _ = wired(db)
    await clinic(db)
    await services.inbox.handle_inbound(said("dr-r", "ACK ZZZZZZ", 1))
    await services.inbox.handle_inbound(said("dr-r", "who is this?", 2))
    assert await to(db, "dr-r") == [
        "No open alert has the code ZZZZZZ. Reply ACK followed by the code in the alert.",
        "Clinician commands: reply ACK and an alert's code to acknowledge it; ALERTS lists your open alerts.",
    ]


@pytest.mark.parametrize("channel", ["sms", "telegram", "console"])
def test_no_alert_text_contains_item_wording(channel: str) -> None:
    """For every rule and every item, the clinician's message carries no item wording."""
    wording = [
        text
        for instrument in CATALOG
        for item in instrument.items
        for text in item.text.texts.values()
    ]
    for rule in DEFAULT_RULES.keys:
        for instrument in CATALOG:
            for item in instrument.items:
                detail = {"instrument": instrument.key, "item": item.key, "item_number": item.number,
                          "value": 2, "total": 14, "change": -6, "session": 3}  # fmt: skip
                notice = ev.AlertNotice("ABC234", rule, "urgent", "P-1", detail, 0, T0)
                for language in LANGUAGES:
                    rendered = RENDERER.render(notice, channel, language)
                    assert rendered is not None
                    assert not any(text in rendered.text for text in wording), rendered.text


async def test_patient_show_lists_alerts(db: Database) -> None:
    """The alert is on the patient's record."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id)
    async with db.transaction() as session:
        alerts = await Repository(session).alerts_for_patient(patient_id)
    assert [(a.rule, a.level) for a in alerts] == [("suicidality", "crisis")]


async def test_a_red_flag_symptom_raises_a_crisis_alert_at_once(db: Database) -> None:
    """'Yes' to the red-flag question: call-911 advice to the patient and a crisis alert."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await services.asking.ask(patient_id, ["side_effects"])
    await services.starting.start_due()
    await services.inbox.handle_inbound(said("pat", "yes", 0))
    (alert,) = await rows(db, Alert)
    assert (alert.rule, alert.level) == ("side_effect_red_flag", "crisis")
    assert any("call 911 now" in body for body in await to(db, "pat"))
    assert (await to(db, "dr-r"))[0].startswith("CRISIS: P-017")


async def test_an_inactive_clinician_is_passed_over_for_their_active_backup(db: Database) -> None:
    """A deactivated responsible clinician gets nothing: their backup is told at once, and
    escalation never goes back to them."""
    services, _, clock = wired(db)
    primary_id, _, patient_id = await clinic(db)
    async with db.transaction() as session:
        primary = await session.get(Clinician, primary_id)
        assert primary is not None
        primary.active = False
        session.add(primary)
    await endorse_item_9(services, patient_id)
    assert await to(db, "dr-r") == []
    (notice,) = await to(db, "dr-b")
    assert notice.startswith("CRISIS: P-017")
    clock.now += timedelta(minutes=16)
    await services.escalation.escalate_due()
    assert await to(db, "dr-r") == []


async def test_a_message_set_aside_asks_the_clinician_to_contact_the_patient(
    db: Database, tmp_path: object
) -> None:
    """A message that failed every processing attempt may have been an answer that
    matters: when it is set aside, the responsible clinician gets an urgent alert, with
    nothing the patient wrote in it."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await unanswerable_check_in(db, tmp_path, clock, patient_id)
    await services.inbox.receive(said("pat", "canary-2020", 0))  # its wording is gone here: fails
    for attempt in range(1, INBOUND_ATTEMPTS + 1):
        clock.now += RECOVERY_GRACE
        assert await services.inbox.process_pending() == 1
        alerts = await rows(db, Alert)
        assert len(alerts) == (1 if attempt == INBOUND_ATTEMPTS else 0)
    (alert,) = alerts
    assert (alert.rule, alert.level, alert.status) == ("message_unprocessed", "urgent", "open")
    (notice,) = await to(db, "dr-r")
    assert notice.startswith(
        "URGENT: P-017, a message from the patient could not be processed; please contact them"
    )
    assert notice.endswith(f"Reply ACK {alert.code}") and "canary-2020" not in notice
