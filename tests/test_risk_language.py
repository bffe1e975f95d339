"""Risk language and safety answers through the service (issue 19): what the patient is
sent, the alert the clinician gets (never the patient's words), an opted-out patient by
channel, and a late answer to item 9 after the check-in expired."""

from __future__ import annotations

from datetime import timedelta

from bot.app.conversations.inbox import Inbound
from bot.app.services import Services
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Checkin, OutboundMessage, Patient
from tests.test_alerting import clinic, to, wired
from tests.test_services import T0, SimClock, rows, said

WORDS = "I want to kill myself"


async def at_item_9(services: Services, patient_id: int) -> None:
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    for n in range(8):
        await services.inbox.handle_inbound(said("pat", "0", n))


async def expired_at_item_9(services: Services, clock: SimClock, patient_id: int) -> None:
    await at_item_9(services, patient_id)
    clock.now = T0 + timedelta(days=2)
    assert await services.reminders.expire_due() == 1


async def set_patient(db: Database, patient_id: int, **changes: object) -> None:
    async with db.transaction() as session:
        patient = await Repository(session).get_patient(patient_id)
        assert patient is not None
        for key, value in changes.items():
            setattr(patient, key, value)
        await Repository(session).add(patient)


async def test_risk_language_with_nothing_open_alerts_without_the_words(db: Database) -> None:
    """No check-in: crisis resources to the patient, an urgent risk_language alert to the
    clinician that says so and when, and none of what the patient wrote."""
    services, _, _ = wired(db)
    await clinic(db)
    await services.inbox.handle_inbound(said("pat", WORDS, 1))
    (sent,) = await to(db, "pat")
    assert "988" in sent
    (alert,) = await rows(db, Alert)
    assert (alert.rule, alert.level, alert.status) == ("risk_language", "urgent", "open")
    assert alert.detail == {"in_checkin": False, "crisis_sent_at": "2026-05-04T09:00:00+00:00"}
    (notice,) = await to(db, "dr-r")
    assert notice.startswith("URGENT: P-017, risk language detected in a message")
    assert "(outside a check-in), 04 May 09:00 UTC" in notice
    assert "Crisis resources were sent to the patient at 09:00 UTC" in notice
    assert "kill" not in notice.lower() and "myself" not in notice.lower()
    audited = [e.action for e in await rows(db, AuditEvent)]
    assert "risk_language" in audited


async def test_risk_language_in_a_check_in_goes_on_with_the_question(db: Database) -> None:
    """At item 2, in Spanish: Spanish crisis lines first, the alert, item 2 asked again."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await set_patient(db, patient_id, language="es")
    await services.asking.ask(patient_id, ["side_effects"])
    await services.starting.start_due()
    await services.inbox.handle_inbound(said("pat", "no", 0))
    await services.inbox.handle_inbound(said("pat", "no quiero seguir viviendo", 1))
    crisis, ask = (await to(db, "pat"))[-2:]
    assert "Línea 988" in crisis and "\n2/9: " in ask and "entendí" not in ask
    (alert,) = await rows(db, Alert)
    assert (alert.rule, alert.detail["in_checkin"]) == ("risk_language", True)


async def test_yes_at_item_9_is_a_crisis_alert_and_item_9_again(db: Database) -> None:
    """A typed "yes" at item 9: crisis resources, the suicidality alert at crisis, then the
    value; the value updates that alert, it does not page twice."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await at_item_9(services, patient_id)
    await services.inbox.handle_inbound(said("pat", "yes", 8))
    crisis, ask = (await to(db, "pat"))[-2:]
    assert "988" in crisis and ask.startswith("Please also choose") and "9/9" in ask
    (alert,) = await rows(db, Alert)
    assert (alert.rule, alert.level) == ("suicidality", "crisis")
    (notice,) = await to(db, "dr-r")
    assert "suicidal thoughts endorsed (PHQ9, item 9 endorsed in words" in notice
    await services.inbox.handle_inbound(said("pat", "1", 9))
    (alert,) = await rows(db, Alert)
    assert alert.occurrences == 2 and len(await to(db, "dr-r")) == 1
    assert [m for m in await to(db, "pat") if "988" in m] == [crisis]


async def test_a_late_item_9_answer_after_expiry_alerts_and_sends_crisis(db: Database) -> None:
    """The check-in expired at item 9; "2" after that: crisis resources and the crisis
    alert marked late; the expired check-in keeps its stored state."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await expired_at_item_9(services, clock, patient_id)
    (before,) = await rows(db, Checkin)
    assert before.status == "expired"
    await services.inbox.handle_inbound(said("pat", "2", 20, clock.now))
    assert "988" in (await to(db, "pat"))[-1]
    alerts = await rows(db, Alert, Alert.rule == "suicidality")
    assert [(a.level, a.detail.get("late")) for a in alerts] == [("crisis", True)]
    assert "answered after the check-in expired" in (await to(db, "dr-r"))[-1]
    (after,) = await rows(db, Checkin)
    assert (after.status, after.state) == ("expired", before.state)


async def test_a_late_button_at_item_9_is_heard(db: Database) -> None:
    """The Telegram button of item 9 pressed after expiry counts as the late answer."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await expired_at_item_9(services, clock, patient_id)
    pressed = Inbound("console", "pat-btn", "pat", "phq9.q9=3", clock.now, kind="button")
    await services.inbox.handle_inbound(pressed)
    old_button = Inbound("console", "pat-btn2", "pat", "phq9.q2=3", clock.now, kind="button")
    await services.inbox.handle_inbound(old_button)
    (alert,) = await rows(db, Alert, Alert.rule == "suicidality")
    assert (alert.level, alert.detail["value"]) == ("crisis", 3)
    assert len([m for m in await to(db, "pat") if "988" in m]) == 1


async def test_a_late_zero_is_not_an_alert(db: Database) -> None:
    """A late "0" at item 9 is answered as any message with nothing open."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await expired_at_item_9(services, clock, patient_id)
    await services.inbox.handle_inbound(said("pat", "0", 20, clock.now))
    assert "no check-in open" in (await to(db, "pat"))[-1]
    assert [a.rule for a in await rows(db, Alert)] == ["safety_item_missing"]  # the expiry's


async def test_opted_out_on_sms_gets_no_message_but_the_clinician_is_told(db: Database) -> None:
    """After STOP on SMS the carrier blocks what we send: no message is queued for the
    patient; the clinician's alert is the path."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await set_patient(db, patient_id, channel="sms", address="+15550100999", status="opted_out")
    inbound = Inbound("sms", "SM1", "+15550100999", WORDS, T0)
    await services.inbox.handle_inbound(inbound)
    queued = [m for m in await rows(db, OutboundMessage) if m.recipient_kind == "patient"]
    assert queued == []
    (alert,) = await rows(db, Alert)
    assert alert.rule == "risk_language" and len(await to(db, "dr-r")) == 1
    assert "crisis_sent_at" not in alert.detail  # nothing was sent: the notice must not say so


async def test_opted_out_on_telegram_gets_crisis_resources(db: Database) -> None:
    """On Telegram a patient who opted out and wrote to us is answered with crisis
    resources, and the clinician is told."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await set_patient(db, patient_id, channel="telegram", address="4242", status="opted_out")
    await services.inbox.handle_inbound(Inbound("telegram", "u1", "4242", WORDS, T0))
    queued = [m for m in await rows(db, OutboundMessage) if m.recipient_kind == "patient"]
    assert [m.payload["intent"] for m in queued] == ["CrisisResources"]
    (alert,) = await rows(db, Alert)
    assert alert.rule == "risk_language"
    (patient,) = await rows(db, Patient)
    assert patient.status == "opted_out"


async def test_an_invited_patient_who_writes_risk_language(db: Database) -> None:
    """Before consent, an SMS reply with risk language still gets crisis resources (they
    wrote to us) ahead of the invitation, and the clinician is told."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await set_patient(db, patient_id, channel="sms", address="+15550100998", status="invited")
    await services.inbox.handle_inbound(Inbound("sms", "SM2", "+15550100998", WORDS, T0))
    queued = [m for m in await rows(db, OutboundMessage) if m.recipient_kind == "patient"]
    assert [m.payload["intent"] for m in queued] == ["CrisisResources", "Invitation"]
    (alert,) = await rows(db, Alert)
    assert alert.rule == "risk_language"
