"""A clinician's SMS alert notice that Twilio reports failed by a signed status callback
(``/sms/status``): the alert goes to the next clinician in line from the webhook, at once
(the handler wakes the courier: no tick runs here), and a failure while rerouting leaves
the failed status recorded and the callback answered. The real twilio client against the
Twilio stand-in; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.app.alerts import alerting as alerting_module
from bot.domain import events as ev
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, OutboundMessage, Patient
from scheduler.loop import courier, tick
from tests.test_sms import PATIENT, Rig, rig, table

__all__ = ["rig"]  # the SMS rig fixture

PRIMARY, BACKUP = "+15555550201", "+15555550202"
UNREACHABLE = 30003  # Twilio: the handset was unreachable; final, never retried


async def crisis_notice_sent(rig: Rig) -> OutboundMessage:
    """Two clinicians on SMS (the second backs up the first) and a patient of the first
    whose crisis alert was raised and its notice sent to the first: that notice."""
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        backup = Clinician(display_name="Dr. B", channel="sms", address=BACKUP)
        await repo.add(backup)
        primary = Clinician(display_name="Dr. A", channel="sms", address=PRIMARY,
                            backup_clinician_id=backup.id)  # fmt: skip
        await repo.add(primary)
        patient = Patient(display_name="P-1", timezone="UTC", channel="sms", address=PATIENT,
                          status="active", clinician_id=primary.id)  # fmt: skip
        await repo.add(patient)
        alerting = rig.app.services.alerting
        assert alerting is not None
        endorsed = ev.SafetyEndorsed("phq9.q9", "phq9", rig.clock())
        await alerting.on_events(repo, patient, [endorsed], rig.clock())
    await tick(rig.app)
    (notice,) = await table(rig.app.db, OutboundMessage)
    assert notice.status == "sent" and notice.provider_id is not None
    return notice


def texts_to(rig: Rig, number: str) -> list[str]:
    return [m["body"] for m in rig.twilio.messages.values() if m["to"] == number]


async def test_a_failed_status_callback_sends_the_alert_to_the_backup_at_once(
    rig: Rig, db: Database
) -> None:
    """The primary's crisis notice is reported undelivered: the backup's SMS leaves from
    the courier within moments, with no tick (without the wake it would wait for one),
    and says why it comes to the backup."""
    notice = await crisis_notice_sent(rig)
    assert notice.provider_id is not None
    async with courier(rig.app):
        callback = rig.twilio.status_request(notice.provider_id, "undelivered", UNREACHABLE)
        assert (await rig.post(callback)).status_code == 204
        for _ in range(150):  # up to 3 s
            if texts_to(rig, BACKUP):
                break
            await asyncio.sleep(0.02)
    (told,) = texts_to(rig, BACKUP)
    assert told.startswith("CRISIS (not delivered to the patient's clinician; sent to you): P-1")
    (alert,) = await table(db, Alert)
    assert alert.escalation_count == 1 and alert.status == "open"


async def test_a_failure_while_rerouting_still_records_the_failed_status(
    rig: Rig, db: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding the next clinician fails (a fault put in): the callback is answered 204 and
    the notice recorded failed all the same; the alert waits for its deadline, and an ERROR
    says so with ids only."""

    async def broken(*_: object) -> None:
        raise RuntimeError("P-1")  # a text no log line may carry

    notice = await crisis_notice_sent(rig)
    assert notice.provider_id is not None
    monkeypatch.setattr(alerting_module, "next_in_line", broken)
    callback = rig.twilio.status_request(notice.provider_id, "undelivered", UNREACHABLE)
    with caplog.at_level(logging.ERROR):
        assert (await rig.post(callback)).status_code == 204
    (failed,) = await table(db, OutboundMessage)
    assert failed.status == "failed" and str(UNREACHABLE) in str(failed.last_error)
    (alert,) = await table(db, Alert)
    assert alert.escalation_count == 0 and alert.status == "open"
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"outbound {failed.id} to clinician {failed.recipient_id}" in error
    assert "RuntimeError" in error and "deadline" in error and "P-1" not in error
    assert texts_to(rig, BACKUP) == []
