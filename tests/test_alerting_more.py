"""Alerts from the tick: two check-ins missed in a row raise one alert; an alert with
nobody to notify is logged (opaque ids), audited and counted."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from bot.app.outbox.delivery import Deliverer
from bot.app.services import Services
from bot.domain.alerts import DEFAULT_RULES
from bot.storage import alerts as stored
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Patient
from tests.test_alerting import clinic, endorse_item_9, to, wired
from tests.test_services import SimClock, rows, said


async def miss_one(
    services: Services, deliverer: Deliverer, clock: SimClock, patient_id: int
) -> None:
    """A check-in delivered and never answered, past its expiry."""
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    await deliverer.drain()  # the clock of a check-in runs from its delivery
    clock.now += timedelta(hours=25)
    await services.reminders.expire_due()


async def test_two_missed_in_a_row_raise_one_routine_alert(db: Database) -> None:
    """One missed check-in alerts nobody; the second in a row alerts the clinician once."""
    services, deliverer, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await miss_one(services, deliverer, clock, patient_id)
    assert await rows(db, Alert) == []
    await miss_one(services, deliverer, clock, patient_id)
    (alert,) = await rows(db, Alert)
    assert (alert.rule, alert.level, alert.detail["missed_in_a_row"]) == (
        "missed_checkins", "routine", 2,
    )  # fmt: skip
    (notice,) = await to(db, "dr-r")
    assert notice.startswith("ROUTINE: P-017, check-ins missed in a row")


async def test_an_answer_breaks_the_streak(db: Database) -> None:
    """Missed, then partly answered and expired, then missed: no two in a row, no alert."""
    services, deliverer, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await miss_one(services, deliverer, clock, patient_id)
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    await services.inbox.handle_inbound(said("pat", "1", 1, clock.now))
    clock.now += timedelta(hours=25)
    await services.reminders.expire_due()
    await miss_one(services, deliverer, clock, patient_id)
    assert await rows(db, Alert, Alert.rule == "missed_checkins") == []


async def test_missed_with_an_open_crisis_alert_is_urgent(db: Database) -> None:
    """After an unresolved crisis alert, two misses in a row are urgent (rule M1)."""
    services, deliverer, clock = wired(db)
    _, _, patient_id = await clinic(db)
    await endorse_item_9(services, patient_id)
    await services.inbox.handle_inbound(said("pat", "0", 9))  # the difficulty item: completed
    await miss_one(services, deliverer, clock, patient_id)
    await miss_one(services, deliverer, clock, patient_id)
    (missed,) = await rows(db, Alert, Alert.rule == "missed_checkins")
    assert missed.level == "urgent" and missed.detail["open_serious_alert"] is True


async def test_an_alert_with_nobody_to_notify_is_counted(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """No clinician at all: a WARNING naming only ids, an audit, and the unrouted count."""
    services, _, _ = wired(db)
    async with db.transaction() as session:
        patient = Patient(display_name="P-9", timezone="UTC", channel="console",
                          address="pat", status="active")  # fmt: skip
        await Repository(session).add(patient)
    assert patient.id is not None
    with caplog.at_level(logging.WARNING, logger="bot.app.alerts.alerting"):
        await endorse_item_9(services, patient.id)
    (alert,) = await rows(db, Alert)
    (record,) = [r for r in caplog.records if "nobody to notify" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "P-9" not in record.getMessage() and "pat" not in record.getMessage()
    (audit,) = await rows(db, AuditEvent, AuditEvent.action == "alert_unrouted")
    assert audit.detail["alert_id"] == alert.id
    assert services.alerting is not None and services.alerting.unrouted == 1
    async with db.transaction() as session:
        assert alert.id is not None
        counts = await stored.unrouted_counts(session, [alert.id])
    assert counts[alert.id] == 1


def test_the_default_missed_rule_is_two_in_a_row() -> None:
    """The default this file relies on: two misses, routine."""
    rule = DEFAULT_RULES.missed_checkins
    assert (rule.in_a_row, rule.level, rule.enabled) == (2, "routine", True)
