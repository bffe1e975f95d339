"""Item 9 over SMS, end to end through the real twilio client and the Twilio stand-in:
crisis resources to the patient, the alert to the clinician's phone, ALERTS lists it and
ACK CODE acknowledges it. Every message to the clinician fits Twilio's 1,600 characters
(the stand-in refuses a longer body with 21617, as Twilio does): a storm's digest and a
long ALERTS answer go as several messages, none lost."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import pytest

from bot.domain.errors import DeliveryFailed
from bot.rendering.renderer import Rendered
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, OutboundMessage, Patient
from scheduler.loop import tick
from tests.standins.twilio import MAX_BODY_CHARS
from tests.test_alert_digests import alerting_of, raise_alert
from tests.test_sms import (  # noqa: F401  (rig: a fixture)
    CLINIC_NUMBER,
    PUBLIC,
    Rig,
    invited,
    rig,
    table,
)

DOCTOR = "+15555550177"


async def from_doctor(rig: Rig, body: str) -> None:  # noqa: F811
    request = rig.twilio.inbound_request(f"{PUBLIC}/sms", from_=DOCTOR, to=CLINIC_NUMBER, body=body)
    assert (await rig.post(request)).status_code == 200
    await tick(rig.app)


def to_doctor(rig: Rig) -> list[str]:  # noqa: F811
    return [m["body"] for m in rig.twilio.messages.values() if m["to"] == DOCTOR]


async def test_item_9_reaches_patient_and_clinician_then_alerts_and_ack(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """YES, a PHQ-9 with item 9 = 2: 988 to the patient, the alert to the clinician by SMS."""
    rig.app.deliverer.pacers = {}  # pacing has its own tests
    patient_id = await invited(rig)
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        doctor = Clinician(display_name="Dr. S", channel="sms", address=DOCTOR)
        await repo.add(doctor)
        patient = await repo.get_patient(patient_id)
        assert patient is not None
        patient.clinician_id, patient.display_name = doctor.id, "P-S1"
        await repo.add(patient)
    await rig.text("YES")
    await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    for _ in range(8):
        await rig.text("0")
    await rig.text("2")
    assert any("988" in body for body in rig.bodies())
    (alert,) = await table(db, Alert)
    (notice,) = to_doctor(rig)
    assert notice.startswith("CRISIS: P-S1, suicidal thoughts endorsed (PHQ9, item 9 = 2)")
    assert notice.endswith(f"Reply ACK {alert.code}")
    await from_doctor(rig, "ALERTS")
    assert to_doctor(rig)[-1].startswith(f"Open alerts (1):\n{alert.code} CRISIS P-S1")
    await from_doctor(rig, f"ACK {alert.code}")
    (acked,) = await table(db, Alert)
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", doctor.id)
    assert to_doctor(rig)[-1] == f"Acknowledged {alert.code}. Reminders for it stop."


SECOND = timedelta(seconds=1)


async def patients_of_an_sms_doctor(rig: Rig, count: int) -> list[Patient]:  # noqa: F811
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        doctor = Clinician(display_name="Dr. S", channel="sms", address=DOCTOR)
        await repo.add(doctor)
        patients = [
            Patient(display_name=f"P-{n:02d}", timezone="UTC", channel="sms",
                    address=f"+1555556{n:04d}", status="active", clinician_id=doctor.id)
            for n in range(1, count + 1)
        ]  # fmt: skip
        for patient in patients:
            await repo.add(patient)
    return patients


def creates_to_doctor(rig: Rig) -> int:  # noqa: F811
    """Every request to send to the doctor, refused or not."""
    return sum(1 for c in rig.twilio.calls if c.params.get("To") == DOCTOR)


async def told_in_order(db: Database, bodies: Sequence[str], reply: str) -> list[tuple[str, str]]:
    """The alerts `bodies` tell, in the order told, as (code, level): found by the code
    after "`reply` ACK" ("Reply" in English, "Responda" in Spanish)."""
    levels = {a.code: a.level for a in await table(db, Alert)}
    pattern = re.compile(rf"{reply} ACK (\S+)")
    return [(code, levels[code]) for body in bodies for code in pattern.findall(body)]


async def clinician_statuses(db: Database) -> set[str]:
    """The statuses of every message queued for a clinician."""
    sent = await table(db, OutboundMessage, OutboundMessage.recipient_kind == "clinician")
    return {m.status for m in sent}


async def sms_storm(
    rig: Rig,  # noqa: F811
    before: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """An urgent alert for an SMS clinician, then ten urgent and twenty-five crisis alerts
    within the 2 s window, the window closed: what the clinician was sent. `before` runs
    once the patients exist (to set the clinician's language, say)."""
    alerting = alerting_of(rig, 2 * SECOND)
    first, *others = await patients_of_an_sms_doctor(rig, 36)
    if before is not None:
        await before()
    await raise_alert(rig, alerting, first, crisis=False)
    await tick(rig.app)
    rig.clock.now += SECOND / 2
    for n, patient in enumerate(others):
        await raise_alert(rig, alerting, patient, crisis=n >= 10)
    rig.clock.now += 2 * SECOND
    await tick(rig.app)
    return to_doctor(rig)


async def test_a_storm_of_crisis_alerts_reaches_an_sms_clinician_as_digests_that_fit(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """An urgent alert, then ten urgent and twenty-five crisis alerts within the window:
    the thirty-five leave as digests of at most 1,600 characters each, every one accepted
    by Twilio, every alert in exactly one of them with its code, the crisis alerts all
    before the urgent ones, numbered on across the messages. Before, a digest of twenty
    was some 4,000 characters: Twilio refused it (21617) and its alerts reached nobody."""
    alone, *digests = await sms_storm(rig)
    assert creates_to_doctor(rig) == len(digests) + 1  # none refused
    assert all(len(body) <= MAX_BODY_CHARS for body in digests)
    assert len(digests) >= 2 and digests[0].startswith(
        f"35 alerts, most urgent first (message 1 of {len(digests)}):\n1. CRISIS: "
    )
    told = await told_in_order(db, digests, "Reply")
    everyone = {a.code for a in await table(db, Alert)}
    assert sorted(code for code, _ in told) == sorted(c for c in everyone if c not in alone)
    assert [level for _, level in told] == ["crisis"] * 25 + ["urgent"] * 10
    numbers = [int(n) for body in digests for n in re.findall(r"^(\d+)\. ", body, re.M)]
    assert numbers == list(range(1, 36))
    assert await clinician_statuses(db) == {"sent"}


async def test_alerts_with_thirty_open_lists_every_one_across_messages_that_fit(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """Thirty open alerts, then ALERTS: the list would be some 2,000 characters; it comes
    as several texts of at most 1,600, each numbered, in order, the crisis alerts first,
    every code once, the ACK hint on the last. Before, Twilio refused the one long text
    (21617) and the clinician got nothing."""
    alerting_of(rig, timedelta(0))  # each notice alone (the rig's clock stands still)
    patients = await patients_of_an_sms_doctor(rig, 30)
    for n, patient in enumerate(patients):
        await raise_alert(rig, rig.app.services.alerting, patient, crisis=n % 3 == 2)
    await tick(rig.app)
    before = len(to_doctor(rig))

    await from_doctor(rig, "ALERTS")

    replies = to_doctor(rig)[before:]
    assert creates_to_doctor(rig) == before + len(replies)  # none refused
    assert 2 <= len(replies) <= 5 and all(len(r) <= MAX_BODY_CHARS for r in replies)
    for n, reply in enumerate(replies, start=1):
        assert reply.startswith(f"Open alerts (30; message {n} of {len(replies)}):\n")
    assert replies[-1].endswith("Reply ACK and a code to acknowledge.")
    assert not any("ACK and a code" in r for r in replies[:-1])
    lines = [line for r in replies for line in r.split("\n")[1:] if " P-" in line]
    levels = {a.code: a.level for a in await table(db, Alert)}
    assert sorted(line.split()[0] for line in lines) == sorted(levels)
    assert [line.split()[1] for line in lines] == ["CRISIS"] * 10 + ["URGENT"] * 20


async def test_a_body_twilio_refuses_as_too_long_is_a_permanent_failure_saying_so(
    rig: Rig,  # noqa: F811
) -> None:
    """Twilio's 21617 (a body over 1,600 characters) fails the message for good, with a
    reason an operator can read, and is never retried: it would be refused again."""
    with pytest.raises(DeliveryFailed) as failed:
        await rig.app.channels["sms"].send(DOCTOR, Rendered("x" * (MAX_BODY_CHARS + 1)), {})
    assert failed.value.permanent
    assert failed.value.reason == "sms: twilio error 21617 (body over 1,600 characters)"
