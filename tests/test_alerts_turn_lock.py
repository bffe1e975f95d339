"""PostgreSQL: a turn that writes a patient's alert back reads it locked, so a change
another transaction has made to it and not yet committed (a reroute here: a failure
round, a recipient, an escalation) survives the turn's raise or amendment instead of
being overwritten by a stale copy. Two real transactions: the reroute's is held open
until the turn waits for it, then committed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.app.alerts.alerting import Alerting
from bot.app.services import Services
from bot.domain.alerts import DEFAULT_RULES
from bot.domain.alerts.lifecycle import ROUND_FAILED, ROUND_TOLD
from bot.storage.alerts import unresolved_for_update
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, OutboundMessage
from tests.test_alerting import RENDERER, clinic, endorse_item_9, wired
from tests.test_services import CATALOG, T0, rows, said

pytestmark = pytest.mark.postgres


async def waiting_for_a_lock(db: Database) -> None:
    """Until some transaction of this test's database waits for a lock another holds (the
    turn, for the row; another database's waits on the same server do not count)."""
    for _ in range(200):
        async with db.engine.connect() as connection:
            waiting = (
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if (await connection.execute(text(waiting))).scalar_one():
                return
        await asyncio.sleep(0.025)
    raise AssertionError("the turn never waited for the alert's row")


async def with_a_reroute_pending(db: Database, turn: Awaitable[None]) -> None:
    """Reroute the alert's first notice (its primary refused it) in a transaction held
    open while `turn` runs, until the turn waits for the row; then commit it."""
    task = asyncio.ensure_future(turn)
    async with db.transaction() as session:
        repo = Repository(session)
        notice = (await session.exec(select(OutboundMessage).where(
            OutboundMessage.recipient_kind == "clinician").order_by(OutboundMessage.id))).first()  # fmt: skip
        assert notice is not None
        await Alerting(CATALOG, DEFAULT_RULES, RENDERER).undelivered(repo, notice, T0)
        await waiting_for_a_lock(db)
        assert not task.done()
    await asyncio.wait_for(task, 5)


async def test_a_raise_keeps_a_reroute_committed_while_it_waited(pg_db: Database) -> None:
    """Item 9 endorsed again in a second check-in updates the open alert while its first
    notice is being rerouted to the backup: the alert counts both occurrences and keeps
    the reroute's failure round, recipient and escalation."""
    services, _, clock = wired(pg_db)
    primary, backup, patient_id = await clinic(pg_db)
    await endorse_item_9(services, patient_id, "1")
    await services.inbox.handle_inbound(said("pat", "0", 9))  # the difficulty item: done
    clock.now += timedelta(minutes=20)
    await again_up_to_item_9(services, patient_id, clock.now)
    await with_a_reroute_pending(
        pg_db, services.inbox.handle_inbound(said("pat", "1", 28, clock.now))
    )
    (alert,) = await rows(pg_db, Alert)
    assert alert.occurrences == 2
    assert (alert.detail[ROUND_FAILED], alert.detail[ROUND_TOLD]) == (str(primary), str(backup))
    assert alert.escalation_count == 1 and alert.recipients == [primary, backup]


async def test_an_amendment_keeps_a_reroute_committed_while_it_waited(pg_db: Database) -> None:
    """Item 9 = 2, BACK, 0 while the crisis notice is being rerouted: the alert gains the
    change and keeps the reroute's failure round and its recipient (the backup, told of
    the change too)."""
    services, _, clock = wired(pg_db)
    primary, backup, patient_id = await clinic(pg_db)
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    for n, answer in enumerate(["0"] * 8 + ["2", "back"]):
        await services.inbox.handle_inbound(said("pat", answer, n, clock.now))
    await with_a_reroute_pending(pg_db, services.inbox.handle_inbound(said("pat", "0", 10)))
    (alert,) = await rows(pg_db, Alert)
    assert (alert.detail["changed_from"], alert.detail["changed_to"]) == (2, 0)
    assert (alert.detail[ROUND_FAILED], alert.detail[ROUND_TOLD]) == (str(primary), str(backup))
    assert alert.recipients == [primary, backup]


async def again_up_to_item_9(services: Services, patient_id: int, now: datetime) -> None:
    await services.asking.ask(patient_id, ["phq9"])
    await services.starting.start_due()
    for n in range(8):
        await services.inbox.handle_inbound(said("pat", "0", 20 + n, now))


async def test_a_message_set_aside_waits_for_the_turn_before_locking_alerts(
    pg_db: Database,
) -> None:
    """The recovery pass sets a message aside (without the patient's lock) while the
    patient's turn holds their row and then reads their alerts to write them: the pass
    takes the row first, as the turn does, and waits; both commit (holding the alerts
    while its new alert's insert waited for the row would deadlock)."""
    services, _, _ = wired(pg_db)
    _, _, patient_id = await clinic(pg_db)
    await endorse_item_9(services, patient_id, "1")
    alerting = Alerting(CATALOG, DEFAULT_RULES, RENDERER)

    async def set_aside() -> None:
        async with pg_db.transaction() as session:
            repo = Repository(session)
            patient = await repo.get_patient(patient_id)
            assert patient is not None
            await alerting.message_set_aside(repo, patient, T0)

    async with pg_db.transaction() as turn:
        await Repository(turn).lock_patient(patient_id)
        pass_ = asyncio.ensure_future(set_aside())
        await waiting_for_a_lock(pg_db)
        (held,) = await asyncio.wait_for(unresolved_for_update(turn, patient_id), 5)
        held.occurrences += 1
    await asyncio.wait_for(pass_, 5)
    alerts = await rows(pg_db, Alert)
    assert [(a.rule, a.occurrences) for a in alerts] == [
        ("suicidality", 2),
        ("message_unprocessed", 1),
    ]
