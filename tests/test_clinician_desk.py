"""A clinician's commands through the service: /patients, /alerts (and SMS ALERTS), /ack,
/trend, /help; only their own patients and the alerts they were told about; audited."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.app.alerts.desk import parse
from bot.rendering import budget
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Clinician, OutboundMessage, Patient
from tests.test_alerting import clinic, endorse_item_9, to, wired
from tests.test_chart import six_sessions
from tests.test_services import rows, said


@pytest.mark.parametrize(
    ("text", "kind", "parsed"),
    [
        ("ACK abc234", "text", ("ack", "abc234")),
        ("/ack ABC234", "text", ("ack", "ABC234")),
        ("ack", "text", ("help", "")),
        ("ALERTS", "text", ("alerts", "")),
        ("/trend@checkin_bot P-6", "text", ("trend", "P-6")),
        ("/patients", "text", ("patients", "")),
        ("who is this?", "text", ("help", "")),
        ("ack:ABC234", "button", ("ack", "ABC234")),
        ("phq9.q1=2", "button", ("help", "")),
    ],
)  # fmt: skip
def test_parse(text: str, kind: str, parsed: tuple[str, str]) -> None:
    """Commands with or without a slash (and a bot name), buttons by their ack: prefix."""
    assert parse(text, kind) == parsed


async def stranger_clinician(db: Database) -> int:
    """A clinician with no patients, not anyone's backup."""
    async with db.transaction() as session:
        other = Clinician(display_name="Dr. Other", channel="console", address="dr-o")
        await Repository(session).add(other)
    assert other.id is not None
    return other.id


async def test_alerts_and_ack_only_for_whom_they_concern(db: Database) -> None:
    """The primary lists and acknowledges; an unrelated clinician is told the code is unknown."""
    services, _, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id)
    (alert,) = await rows(db, Alert)
    await stranger_clinician(db)
    await services.inbox.handle_inbound(said("dr-o", "ALERTS", 1, clock.now))
    await services.inbox.handle_inbound(said("dr-o", f"ACK {alert.code}", 2, clock.now))
    assert await to(db, "dr-o") == [
        "No open alerts.",
        f"No open alert has the code {alert.code}. Reply ACK followed by the code in the alert.",
    ]
    await services.inbox.handle_inbound(said("dr-r", "alerts", 3, clock.now))
    listing = (await to(db, "dr-r"))[-1]
    assert listing.startswith("Open alerts (1):\n") and f"{alert.code} CRISIS P-017" in listing
    assert "suicidal thoughts endorsed" in listing
    await services.inbox.handle_inbound(said("dr-r", f"/ack {alert.code}", 4, clock.now))
    (acked,) = await rows(db, Alert)
    assert acked.status == "acknowledged"
    audits = await rows(db, AuditEvent, AuditEvent.subject == f"patient:{patient_id}")
    actions = [(a.actor.split(":")[0], a.action) for a in audits]
    assert ("clinician", "alerts_viewed") in actions and (
        "clinician",
        "AlertAcknowledged",
    ) in actions


async def test_the_backup_who_was_told_may_acknowledge(db: Database) -> None:
    """After escalation the backup is a recipient: their ACK counts."""
    services, _, clock = wired(db)
    _, backup_id, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id)
    (alert,) = await rows(db, Alert)
    clock.now += timedelta(minutes=16)
    assert await services.escalation.escalate_due() == 1
    await services.inbox.handle_inbound(said("dr-b", f"ack {alert.code}", 5, clock.now))
    (acked,) = await rows(db, Alert)
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", backup_id)


async def test_patients_lists_scores_trend_and_open_alerts(db: Database) -> None:
    """Last PHQ-9, the direction from the one before, and the open alert count; audited."""
    services, _, clock = wired(db)
    primary_id, _, _ = await clinic(db)
    patient_id = await six_sessions(db)
    async with db.transaction() as session:
        patient = await session.get(Patient, patient_id)
        assert patient is not None
        patient.clinician_id = primary_id
        await Repository(session).add(patient)
    await services.inbox.handle_inbound(said("dr-r", "/patients", 1, clock.now))
    listing = (await to(db, "dr-r"))[-1]
    assert listing.splitlines()[0] == "Your patients:"
    assert f"{patient_id} P-6: PHQ9 6 (down from 8)" in listing
    assert "P-017: no score yet" in listing
    (audit,) = await rows(db, AuditEvent, AuditEvent.action == "patient_listed",
                          AuditEvent.subject == f"patient:{patient_id}")  # fmt: skip
    assert audit.actor == f"clinician:{primary_id}"


async def test_a_list_past_five_messages_ends_by_sending_to_the_panel(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hundred patients and a channel that holds 400 characters a message: /patients
    comes as five messages of at most 400, in order with no patient skipped, each saying
    which of the five it is, and the last saying how many more the web panel lists."""
    monkeypatch.setitem(budget.MESSAGE_CHARS, "console", 400)
    services, _, clock = wired(db)
    primary_id, _, _ = await clinic(db)
    async with db.transaction() as session:
        for n in range(99):
            await Repository(session).add(
                Patient(display_name=f"P-{n:03d}", timezone="UTC", channel="console",
                        address=f"pat-{n}", status="active", clinician_id=primary_id)
            )  # fmt: skip
    await services.inbox.handle_inbound(said("dr-r", "/patients", 1, clock.now))
    replies = await to(db, "dr-r")
    assert len(replies) == budget.MAX_PARTS and all(len(r) <= 400 for r in replies)
    for n, reply in enumerate(replies, start=1):
        assert reply.startswith(f"Your patients (message {n} of 5):\n")
    ids = [int(line.split()[0]) for r in replies for line in r.splitlines()[1:] if " P-" in line]
    (patients,) = [sorted(p.id or 0 for p in await rows(db, Patient))]
    assert ids == patients[: len(ids)]
    assert replies[-1].endswith(
        f"…and {100 - len(ids)} more patients: open the web panel for the whole list"
    )


async def test_trend_sends_a_chart_to_whom_it_concerns(db: Database) -> None:
    """/trend by name queues the PNG with a caption; another clinician's patient is unknown."""
    services, _, clock = wired(db)
    primary_id, _, _ = await clinic(db)
    patient_id = await six_sessions(db)
    async with db.transaction() as session:
        patient = await session.get(Patient, patient_id)
        assert patient is not None
        patient.clinician_id = primary_id
        await Repository(session).add(patient)
    await stranger_clinician(db)
    await services.inbox.handle_inbound(said("dr-r", "/trend p-6", 1, clock.now))
    await services.inbox.handle_inbound(said("dr-o", f"/trend {patient_id}", 2, clock.now))
    await services.inbox.handle_inbound(said("dr-r", "/trend", 3, clock.now))
    (chart, usage) = [m for m in await rows(db, OutboundMessage) if m.address == "dr-r"]
    assert chart.body.startswith("P-6: 7 check-ins over time.")
    assert isinstance(chart.payload["photo"], str) and len(chart.payload["photo"]) > 1000
    assert usage.body.startswith("Send /trend and a patient's id or name")
    assert await to(db, "dr-o") == ["None of your patients matches that. /patients lists them."]
    viewed = await rows(db, AuditEvent, AuditEvent.action == "trend_viewed")
    assert [(a.actor, a.subject) for a in viewed] == [
        (f"clinician:{primary_id}", f"patient:{patient_id}")
    ]


async def test_help_lists_the_commands(db: Database) -> None:
    """/help (and anything unknown) answers with the command list."""
    services, _, clock = wired(db)
    await clinic(db)
    await services.inbox.handle_inbound(said("dr-r", "/help", 1, clock.now))
    assert "ALERTS lists your open alerts" in (await to(db, "dr-r"))[-1]
