"""An alert notice the provider refuses for good goes to the next clinician at once, end to
end through the real python-telegram-bot and the Bot API stand-in (no clock moves): a
crisis alert whose clinician blocked the bot reaches the backup within the tick, not at 15
minutes, saying why it comes to them (that notice only: the deadline's reminders do not,
and a digest says it on the rerouted alerts' lines); a failure that will be retried
changes nothing; a refused digest sends on every alert it listed; clinicians who all
refuse are each tried once, then the deadline takes over; a failure while rerouting leaves
the refused notice dead all the same. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlmodel import col

from bot.app.alerts import alerting as alerting_module
from bot.app.operator.alerts import list_alerts
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Clinician, OutboundMessage, Patient
from scheduler.loop import tick
from tests.standins.telegram import server_error
from tests.test_alert_digests import SECOND, alerting_of, raise_alert
from tests.test_telegram import Rig, rig, table  # noqa: F401  (rig: a fixture)

PRIMARY, BACKUP, OTHER = 9101, 9102, 9103
LEASE = timedelta(seconds=30)  # [scheduler] send_lease_s
NOT_PRIMARY = "not delivered to the patient's clinician; sent to you"  # a rerouted notice
NOT_OTHER = "not delivered to another clinician; sent to you"


async def clinic(rig: Rig, patients: int = 1) -> list[Patient]:  # noqa: F811
    """Three clinicians on Telegram (the first's backup is the second) and their patients."""
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        backup = Clinician(display_name="Dr. B", channel="telegram", address=str(BACKUP))
        await repo.add(backup)
        primary = Clinician(display_name="Dr. A", channel="telegram", address=str(PRIMARY),
                            backup_clinician_id=backup.id)  # fmt: skip
        await repo.add(primary)
        await repo.add(Clinician(display_name="Dr. C", channel="telegram", address=str(OTHER)))
        found = [
            Patient(display_name=f"P-{n}", timezone="UTC", channel="telegram",
                    address=str(7100 + n), status="active", clinician_id=primary.id)
            for n in range(1, patients + 1)
        ]  # fmt: skip
        await repo.add(*found)
    return found


def attempts(rig: Rig, chat: int) -> int:  # noqa: F811
    """How many messages the bot tried to send to `chat` (refused ones included)."""
    return sum(
        1 for c in rig.stand_in.calls_to("sendMessage") if str(c.params["chat_id"]) == str(chat)
    )


async def undelivered_audits(db: Database) -> list[AuditEvent]:
    return await table(db, AuditEvent, col(AuditEvent.action) == "alert_undelivered")


async def test_a_crisis_alert_refused_by_a_blocked_clinician_reaches_the_backup_at_once(
    rig: Rig,  # noqa: F811
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The primary blocked the bot: the 403 marks the notice dead and, in the same tick,
    the backup gets the crisis notice (an escalation; the deadline is 15 minutes away),
    saying why it comes to them, not "reminder 1" of a notice they never had. Audited
    and logged with ids only; `checkin alerts` counts it."""
    alerting = alerting_of(rig, timedelta(0))
    (patient,) = await clinic(rig)
    rig.stand_in.block(PRIMARY)
    await raise_alert(rig, alerting, patient, crisis=True)
    with caplog.at_level(logging.WARNING):
        await tick(rig.app)
    (notice,) = rig.stand_in.messages(BACKUP)
    assert notice["text"].startswith(f"CRISIS ({NOT_PRIMARY}): P-1")
    assert attempts(rig, PRIMARY) == 1 and attempts(rig, OTHER) == 0
    (alert,) = await table(db, Alert)
    assert alert.escalation_count == 1 and alert.status == "open"
    assert alert.ack_deadline == rig.clock() + timedelta(minutes=15)  # unchanged
    primary, backup = alert.recipients
    (audit,) = await undelivered_audits(db)
    assert audit.detail["alert_id"] == alert.id and audit.detail["clinician"] == primary
    assert audit.detail["rerouted_to"] == backup
    warning = [r.getMessage() for r in caplog.records if "failed for good" in r.getMessage()]
    assert len(warning) == 1 and "P-1" not in warning[0] and "suicid" not in warning[0]
    (view,) = await list_alerts(rig.app.db, rig.clock)
    assert view.undelivered == 1 and view.unrouted == 0


async def test_the_deadline_repeat_after_a_reroute_is_a_reminder_and_a_new_refusal_says_why(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """The primary blocked the bot: the backup is told why. At the deadline both are
    reminded ("reminder 2"): the deadline opens a new failure round, nothing in it has
    failed when the reminders are written, and the backup was told why already. The
    primary's reminder is refused again: the clinician told instead is told why."""
    alerting = alerting_of(rig, timedelta(0))
    (patient,) = await clinic(rig)
    rig.stand_in.block(PRIMARY)
    await raise_alert(rig, alerting, patient, crisis=True)
    await tick(rig.app)
    assert rig.stand_in.sent_texts(BACKUP)[0].startswith(f"CRISIS ({NOT_PRIMARY}): P-1")
    rig.clock.now += timedelta(minutes=15)
    await tick(rig.app)
    await tick(rig.app)
    assert attempts(rig, PRIMARY) == 2
    _, reminder = rig.stand_in.sent_texts(BACKUP)
    assert reminder.startswith("CRISIS (reminder 2, not yet acknowledged): P-1")
    (other,) = rig.stand_in.sent_texts(OTHER)
    assert other.startswith(f"CRISIS ({NOT_PRIMARY}): P-1")


async def test_a_refused_escalation_to_the_backup_says_another_clinicians_message_failed(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """The primary was sent the alert and has not acknowledged it; at the deadline the
    backup, who blocked the bot, is refused: the clinician told instead reads that a
    message to another clinician failed, not the patient's clinician's."""
    alerting = alerting_of(rig, timedelta(0))
    (patient,) = await clinic(rig)
    rig.stand_in.block(BACKUP)
    await raise_alert(rig, alerting, patient, crisis=True)
    await tick(rig.app)
    assert rig.stand_in.sent_texts(PRIMARY)[0].startswith("CRISIS: P-1")
    rig.clock.now += timedelta(minutes=15)
    await tick(rig.app)
    (other,) = rig.stand_in.sent_texts(OTHER)
    assert other.startswith(f"CRISIS ({NOT_OTHER}): P-1")
    (alert,) = await table(db, Alert)
    assert alert.escalation_count == 2


async def test_a_failure_that_will_be_retried_does_not_escalate(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """A 500 from the Bot API is retried: nobody else is told and nothing is audited; the
    retry reaches the primary."""
    alerting = alerting_of(rig, timedelta(0))
    (patient,) = await clinic(rig)
    rig.stand_in.fail(server_error(500), method="sendMessage", chat_id=PRIMARY)
    await raise_alert(rig, alerting, patient, crisis=True)
    await tick(rig.app)
    await tick(rig.app)
    assert attempts(rig, PRIMARY) == 1 and attempts(rig, BACKUP) == attempts(rig, OTHER) == 0
    (message,) = await table(db, OutboundMessage)
    assert message.status == "queued" and message.last_error
    (alert,) = await table(db, Alert)
    assert alert.escalation_count == 0 and not await undelivered_audits(db)
    rig.clock.now += 10 * SECOND  # past the backoff, far from the deadline
    await tick(rig.app)
    assert rig.stand_in.sent_texts(PRIMARY)[0].startswith("CRISIS: P-1")
    assert attempts(rig, BACKUP) == 0


async def test_a_refused_digest_sends_on_every_alert_it_listed(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """The primary's first alert arrives; then they block the bot and two more alerts leave
    as one digest, which is refused: both of its alerts go to the backup, the first not."""
    alerting = alerting_of(rig, 2 * SECOND)
    first, second, third = await clinic(rig, patients=3)
    await raise_alert(rig, alerting, first, crisis=False)
    await tick(rig.app)
    assert rig.stand_in.sent_texts(PRIMARY)[0].startswith("URGENT: P-1")
    rig.stand_in.block(PRIMARY)
    rig.clock.now += SECOND / 2
    await raise_alert(rig, alerting, second, crisis=True)
    await raise_alert(rig, alerting, third, crisis=False)
    rig.clock.now += 2 * SECOND  # the window closes: the digest goes, and is refused
    await tick(rig.app)
    (digest,) = [c for c in rig.stand_in.calls_to("sendMessage") if c.fault is not None]
    assert str(digest.params["chat_id"]) == str(PRIMARY)
    rig.clock.now += 2 * SECOND  # the backup's own digest window, if its two were held
    await tick(rig.app)
    told = "\n".join(rig.stand_in.sent_texts(BACKUP))
    alerts = {a.patient_id: a for a in await table(db, Alert)}
    assert first.id is not None and second.id is not None and third.id is not None
    assert alerts[second.id].code in told and alerts[third.id].code in told
    assert alerts[first.id].code not in told and alerts[first.id].escalation_count == 0
    assert [alerts[p.id].escalation_count for p in (second, third)] == [1, 1]  # type: ignore[index]
    audited = sorted(a.detail["alert_id"] for a in await undelivered_audits(db))
    assert audited == sorted([alerts[second.id].id, alerts[third.id].id])


async def test_rerouted_alerts_held_for_a_digest_still_say_why(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """Three alerts of a refused digest reach the backup as one notice at once and, after
    the window, a digest of the other two: each alert, on its own or on its digest line,
    says why it comes to them."""
    alerting = alerting_of(rig, 2 * SECOND)
    first, *refused = await clinic(rig, patients=4)
    await raise_alert(rig, alerting, first, crisis=False)
    await tick(rig.app)
    rig.stand_in.block(PRIMARY)
    rig.clock.now += SECOND / 2
    for n, patient in enumerate(refused):
        await raise_alert(rig, alerting, patient, crisis=n == 0)
    rig.clock.now += 2 * SECOND  # the window closes: the digest goes, and is refused
    await tick(rig.app)
    rig.clock.now += 2 * SECOND  # the backup's own window: the two held leave together
    await tick(rig.app)
    alone, digest = rig.stand_in.sent_texts(BACKUP)
    assert alone.startswith(f"CRISIS ({NOT_PRIMARY}): P-2")
    assert digest.startswith("2 alerts, most urgent first:\n1. URGENT (" + NOT_PRIMARY)
    assert digest.count(NOT_PRIMARY) == 2 and "reminder" not in digest


async def test_clinicians_who_all_refuse_are_each_tried_once_then_the_deadline_goes_on(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """Primary, backup and the clinic's other clinician have all blocked the bot: the
        notice goes to each once (primary, backup, other), then stops; no bounce however many
        ticks. At the deadline the usual escalation tells primary and backup again, and
    their refusals reach the other clinician once more."""
    alerting = alerting_of(rig, timedelta(0))
    (patient,) = await clinic(rig)
    for chat in (PRIMARY, BACKUP, OTHER):
        rig.stand_in.block(chat)
    await raise_alert(rig, alerting, patient, crisis=True)
    for _ in range(6):
        await tick(rig.app)
    assert [attempts(rig, c) for c in (PRIMARY, BACKUP, OTHER)] == [1, 1, 1]
    (alert,) = await table(db, Alert)
    assert alert.escalation_count == 2 and alert.status == "open"
    audits = await undelivered_audits(db)
    assert [a.detail["rerouted_to"] for a in audits] == [*alert.recipients[1:], None]
    rig.clock.now += timedelta(minutes=15)  # the deadline: a new round
    await tick(rig.app)
    assert attempts(rig, PRIMARY) == 2 and attempts(rig, BACKUP) == 2
    for _ in range(6):
        await tick(rig.app)
    # the new round: the primary's refusal goes to the one not told yet, once
    assert [attempts(rig, c) for c in (PRIMARY, BACKUP, OTHER)] == [2, 2, 2]


async def test_a_failure_while_rerouting_leaves_the_refused_notice_dead_and_the_deadline_on(
    rig: Rig,  # noqa: F811
    db: Database,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding the next clinician fails (a fault put in): the blocked primary's notice is
    marked dead all the same and never tried again, even past its lease; nobody else is
    told until the deadline, when the escalation tells the backup as usual. One ERROR per
    refusal, with ids and the exception's type, never the patient's name."""

    async def broken(*_: object) -> None:
        raise RuntimeError("P-1")  # a text no log line may carry

    alerting = alerting_of(rig, timedelta(0))
    (patient,) = await clinic(rig)
    rig.stand_in.block(PRIMARY)
    monkeypatch.setattr(alerting_module, "next_in_line", broken)
    await raise_alert(rig, alerting, patient, crisis=True)
    with caplog.at_level(logging.WARNING):
        await tick(rig.app)
        rig.clock.now += 2 * LEASE
        await tick(rig.app)
    (message,) = await table(db, OutboundMessage)
    assert message.status == "dead" and attempts(rig, PRIMARY) == 1
    assert attempts(rig, BACKUP) == attempts(rig, OTHER) == 0
    (alert,) = await table(db, Alert)
    assert alert.status == "open" and alert.escalation_count == 0
    assert not await undelivered_audits(db)
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"outbound {message.id} to clinician {alert.recipients[0]}" in error
    assert "RuntimeError" in error and "deadline" in error and "P-1" not in error
    rig.clock.now += timedelta(minutes=15)  # the deadline: the escalation goes on as before
    await tick(rig.app)
    (notice,) = rig.stand_in.messages(BACKUP)
    assert notice["text"].startswith("CRISIS (reminder 1, not yet acknowledged): P-1")
