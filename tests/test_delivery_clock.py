"""The delivery clock, end to end on a real SQLite file and a real PostgreSQL server: a
check-in held back in the outbox is neither reminded nor expired until its question goes
out, then counts from that moment; one never delivered is cancelled and audited, not
missed; a pre-session check-in still closes at its session's start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bot.storage.database import Database
from bot.storage.tables import Alert, AuditEvent, Checkin, OutboundMessage
from tests.test_presession import EVENINGS, enrolled, la, pre_session
from tests.test_scheduling import Clinic2
from tests.test_services import T0, SimClock, Wired, add_patient, rows, started, wire

H = timedelta(hours=1)


@pytest.fixture
def wired(db: Database) -> Wired:
    return wire(db)


async def with_reminder(db: Database, checkin_id: int, after: timedelta) -> None:
    """One reminder `after` the question (as a protocol rule would ask for)."""
    async with db.transaction() as session:
        await session.exec(
            update(Checkin)
            .where(Checkin.id == checkin_id)  # type: ignore[arg-type]
            .values(reminder_after_s=int(after.total_seconds()), max_reminders=1,
                    next_reminder_at=T0 + after)
        )  # fmt: skip


async def checkin_row(db: Database, checkin_id: int | None) -> Checkin:
    (row,) = await rows(db, Checkin, Checkin.id == checkin_id)
    return row


async def test_a_held_back_question_is_reminded_and_expires_from_its_delivery(
    db: Database, wired: Wired
) -> None:
    """Started at 09:00, its question held in the outbox until 12:00: no reminder at 10:00
    (the 1 h reminder is due at 13:00), and it expires 24 h after 12:00, not after 09:00."""
    checkin = await started(wired, await add_patient(db), ["phq9"])
    await with_reminder(db, checkin.id or 0, H)
    wired.clock.now = T0 + 2 * H
    assert await wired.services.reminders.remind_due() == 0  # not asked yet
    wired.clock.now = T0 + 3 * H
    await wired.deliverer.drain()  # the provider takes it now
    assert await wired.services.reminders.remind_due() == 0
    stamped = await checkin_row(db, checkin.id)
    assert stamped.delivered_at == T0 + 3 * H
    assert (stamped.next_reminder_at, stamped.expires_at) == (T0 + 4 * H, T0 + 27 * H)
    wired.clock.now = T0 + 4 * H
    assert await wired.services.reminders.remind_due() == 1
    wired.clock.now = T0 + 25 * H  # past the expiry counted from the start
    await wired.services.reminders.expire_due()
    assert (await checkin_row(db, checkin.id)).status == "sent"
    wired.clock.now = T0 + 27 * H
    assert await wired.services.reminders.expire_due() == 1
    assert (await checkin_row(db, checkin.id)).status == "expired"


async def test_a_question_never_delivered_is_cancelled_and_audited_not_missed(
    db: Database, wired: Wired
) -> None:
    """Still in the outbox when its expiry comes: cancelled (not expired), its opening
    withdrawn from the outbox, an audit record naming it; the patient missed nothing."""
    patient_id = await add_patient(db)
    checkin = await started(wired, patient_id, ["phq9"])
    wired.clock.now = T0 + 25 * H
    assert await wired.services.reminders.expire_due() == 1
    closed = await checkin_row(db, checkin.id)
    assert (closed.status, closed.delivered_at) == ("cancelled", None)
    openings = await rows(db, OutboundMessage, OutboundMessage.recipient_id == patient_id)
    assert openings and {m.status for m in openings} == {"dead"}
    assert {m.last_error for m in openings} == {"never delivered: given up"}
    (audit,) = await rows(db, AuditEvent, AuditEvent.action == "checkin_undelivered")
    assert (audit.subject, audit.detail) == (f"patient:{patient_id}", {"checkin": checkin.id})
    assert await rows(db, Alert) == []
    assert await wired.deliverer.drain() is not None
    assert wired.console.getvalue() == ""  # nothing goes out after it was given up


async def test_delivered_just_before_its_planned_expiry_it_stays_open_its_full_window(
    db: Database, wired: Wired
) -> None:
    """Held in the outbox until 08:00 the next day, one hour before its planned expiry: the
    expiry stage finds it delivered and leaves it open until 24 h after that."""
    checkin = await started(wired, await add_patient(db), ["phq9"])
    wired.clock.now = T0 + 23 * H
    await wired.deliverer.drain()
    wired.clock.now = T0 + 24 * H + 30 * timedelta(minutes=1)
    assert await wired.services.reminders.expire_due() == 0
    kept = await checkin_row(db, checkin.id)
    assert (kept.status, kept.delivered_at, kept.expires_at) == ("sent", T0 + 23 * H, T0 + 47 * H)


async def test_a_pre_session_check_in_closes_at_its_session_whatever_its_delivery(
    db: Database,
) -> None:
    """Two patients, a session at 10:00 each, the PHQ-9 started at 08:00: one question goes
    out at 09:30 and the check-in expires at 10:00 all the same; the other never goes out
    and is cancelled at 10:00 as undelivered."""
    clock = SimClock(datetime(2027, 3, 5, 17, 0, tzinfo=UTC))
    clinic = Clinic2(db, clock, EVENINGS)
    late, never = await enrolled(db), await enrolled(db)
    for patient_id in (late, never):
        await clinic.planner.add_session(patient_id, la(3, 10, 10), "ketamine-iv")
    (planned,) = (await pre_session(db, late)).values()
    assert (planned.closes_at, planned.expire_after_s) == (la(3, 10, 10), 3 * 3600)
    clock.now = la(3, 10, 8)
    await clinic.planner.plan_due()
    await clinic.w.services.reminders.expire_due()  # the baselines, never started, close
    assert await clinic.w.services.starting.start_due() == 2
    clock.now = la(3, 10, 9, 30)
    async with db.transaction() as session:  # the provider still holds the second one
        await session.exec(
            update(OutboundMessage)
            .where(OutboundMessage.recipient_id == never)  # type: ignore[arg-type]
            .values(next_attempt_at=la(3, 11, 0))
        )
    await clinic.w.deliverer.drain()
    await clinic.w.services.reminders.remind_due()
    (delivered,) = (await pre_session(db, late)).values()
    assert (delivered.delivered_at, delivered.expires_at) == (la(3, 10, 9, 30), la(3, 10, 10))
    clock.now = la(3, 10, 10, 7)
    assert await clinic.w.services.reminders.expire_due() == 2
    (expired,) = (await pre_session(db, late)).values()
    (cancelled,) = (await pre_session(db, never)).values()
    assert (expired.status, cancelled.status) == ("expired", "cancelled")
    (audit,) = await rows(db, AuditEvent, AuditEvent.action == "checkin_undelivered")
    assert audit.at == la(3, 10, 10)


async def test_a_check_in_asked_by_hand_carries_its_window(db: Database) -> None:
    """`checkin ask` stores the expiry window the delivery clock counts from."""
    w = wire(db)
    checkin = await w.services.asking.ask(await add_patient(db), ["phq9"])
    assert ((await checkin_row(db, checkin.id)).expire_after_s, checkin.closes_at) == (86400, None)
