"""What clinicians are told, through the service on a real database: a suicidality alert
says that crisis resources were sent to the patient and when (escalations too), and a
red-flag alert names the symptoms as the patient names them."""

from __future__ import annotations

from datetime import timedelta

from bot.domain.alerts import CRISIS_SENT_AT
from bot.storage.database import Database
from bot.storage.tables import Alert
from tests.test_alerting import clinic, endorse_item_9, to, wired
from tests.test_services import T0, rows, said


async def test_suicidality_alerts_say_when_crisis_resources_were_sent(db: Database) -> None:
    """The notice, and the backup's escalation later, carry the time of the crisis message."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id)
    (alert,) = await rows(db, Alert)
    assert alert.detail[CRISIS_SENT_AT] == T0.isoformat()
    (notice,) = await to(db, "dr-r")
    assert "Crisis resources were sent to the patient at 09:00 UTC." in notice
    assert any("988" in body for body in await to(db, "pat"))
    clock.now += timedelta(minutes=16)
    assert await services.escalation.escalate_due() == 1
    (escalated,) = await to(db, "dr-b")
    assert "reminder 1" in escalated and "sent to the patient at 09:00 UTC" in escalated


async def test_other_alerts_claim_no_crisis_message(db: Database) -> None:
    """A red-flag alert is not a suicidality alert: no crisis-lines sentence."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await services.asking.ask(patient_id, ["side_effects"])
    await services.starting.start_due()
    await services.inbox.handle_inbound(said("pat", "yes", 1))
    (notice,) = await to(db, "dr-r")
    assert notice.startswith("CRISIS: P-017, red-flag symptom after a session (")
    assert "Crisis resources" not in notice


async def test_red_flag_alerts_name_each_symptom(db: Database) -> None:
    """The opening "yes" pages at once; each symptom then named tells the clinician again,
    "chest pain reported", then both; a "no" tells nobody. One alert throughout."""
    services, _, _ = wired(db)
    _, _, patient_id = await clinic(db)
    await services.asking.ask(patient_id, ["side_effects"])
    await services.starting.start_due()
    for n, reply in enumerate(["yes", "yes", "yes", "no"], start=1):
        await services.inbox.handle_inbound(said("pat", reply, n))
    first, chest, both = await to(db, "dr-r")
    assert "reported" not in first
    assert "red-flag symptom after a session: chest pain reported (" in chest
    assert ": chest pain, shortness of breath reported (" in both
    (alert,) = await rows(db, Alert)
    assert alert.rule == "side_effect_red_flag" and alert.occurrences == 3
    assert all(alert.code in body for body in (first, chest, both))
    patient_messages = await to(db, "pat")
    assert sum("call 911 now" in body for body in patient_messages) == 1
