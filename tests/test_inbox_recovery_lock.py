"""PostgreSQL: the recovery pass takes a patient's row lock before it writes their inbound
rows, as a turn does, so a pass setting a message aside while the patient's turn
processes that message waits for the turn instead of deadlocking with it, and a message
is processed or set aside once, whichever comes first. Three real transactions: a third
holds a row the first needs (the check-in, the message) until both wait, then commits."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text, update
from sqlmodel import select

from bot.app.conversations.inbox import INBOUND_ATTEMPTS
from bot.app.services import Services
from bot.storage.database import Database
from bot.storage.tables import Alert, Answer, Checkin, InboundMessage
from tests.test_alerting import clinic, wired
from tests.test_services import rows, said

pytestmark = pytest.mark.postgres


async def waiting_for_locks(db: Database, sessions: int) -> None:
    """Until `sessions` transactions of this database each wait for a lock another holds
    (other databases on the server, other tests', do not count)."""
    for _ in range(200):
        async with db.engine.connect() as connection:
            waiting = (
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if (await connection.execute(text(waiting))).scalar_one() >= sessions:
                return
        await asyncio.sleep(0.025)
    raise AssertionError(f"fewer than {sessions} transactions ever waited for a lock")


async def one_message_at_its_last_attempt(db: Database, services: Services) -> int:
    """A PHQ-9 check-in sent to the patient, and their answer to it recorded, not
    processed, failed INBOUND_ATTEMPTS - 1 times; its id."""
    _, _, patient_id = await clinic(db)
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    failing = await services.inbox.receive(said("pat", "1", 0))
    assert failing is not None
    async with db.transaction() as session:
        await session.exec(update(InboundMessage).values(attempts=INBOUND_ATTEMPTS - 1))
    return failing


async def test_a_message_set_aside_while_its_turn_processes_it_waits_for_the_turn(
    pg_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A message failed its last attempt but one; the pass counts the last failure just as
    the patient's next answer, under their lock, processes it (the cause gone): the pass
    waits for the patient's row before touching the message, finds it processed, and
    neither counts it nor sets it aside. Both answers are taken once, in order; no alert,
    no error. (Counting first, then locking the patient for the alert, deadlocked: the
    turn then waited for the message's row to mark it processed.)"""
    services, _, _ = wired(pg_db)
    failing = await one_message_at_its_last_attempt(pg_db, services)
    with caplog.at_level("ERROR"):
        async with pg_db.transaction() as blocker:  # holds the turn before it marks anything
            await blocker.exec(select(Checkin).with_for_update())
            turn = asyncio.ensure_future(services.inbox.handle_inbound(said("pat", "2", 1)))
            await waiting_for_locks(pg_db, 1)
            # what process_pending does after processing `failing` raised
            recovery = asyncio.ensure_future(services.inbox._failed(failing, "KeyError", set()))
            await waiting_for_locks(pg_db, 2)
        assert await asyncio.wait_for(turn, 5) is True
        await asyncio.wait_for(recovery, 5)
    assert caplog.text == ""
    answers = await rows(pg_db, Answer)
    assert [(a.raw_text, a.inbound_message_id) for a in answers] == [
        ("1", failing),
        ("2", failing + 1),
    ]
    inbound = await rows(pg_db, InboundMessage)
    assert [(m.attempts, m.error, m.processed_at is not None) for m in inbound] == [
        (INBOUND_ATTEMPTS - 1, None, True),
        (0, None, True),
    ]
    assert await rows(pg_db, Alert) == []


async def test_a_message_set_aside_before_the_patients_turn_is_skipped_by_the_turn(
    pg_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The other order: the pass holds the patient's row (its write to the message held
    up) when their next answer arrives; the turn waits for the pass, which sets the
    message aside and raises the alert, then takes its answer alone, as the first. Each
    message handled once, no error but the set-aside."""
    services, _, _ = wired(pg_db)
    failing = await one_message_at_its_last_attempt(pg_db, services)
    with caplog.at_level("ERROR"):
        async with pg_db.transaction() as blocker:  # holds the pass before it counts
            await blocker.exec(select(InboundMessage).with_for_update())
            recovery = asyncio.ensure_future(services.inbox._failed(failing, "KeyError", set()))
            await waiting_for_locks(pg_db, 1)
            turn = asyncio.ensure_future(services.inbox.handle_inbound(said("pat", "2", 1)))
            await waiting_for_locks(pg_db, 2)
        await asyncio.wait_for(recovery, 5)
        assert await asyncio.wait_for(turn, 5) is True
    assert f"inbound {failing} set aside after {INBOUND_ATTEMPTS}" in caplog.text
    assert "could not be processed" not in caplog.text and "left for recovery" not in caplog.text
    answers = await rows(pg_db, Answer)
    assert [(a.item_key, a.raw_text, a.inbound_message_id) for a in answers] == [
        ("phq9.q1", "2", failing + 1)
    ]
    inbound = await rows(pg_db, InboundMessage)
    assert [(m.attempts, m.error, m.processed_at is not None) for m in inbound] == [
        (INBOUND_ATTEMPTS, "set_aside:KeyError", True),
        (0, None, True),
    ]
    assert [a.rule for a in await rows(pg_db, Alert)] == ["message_unprocessed"]
