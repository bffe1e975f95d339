"""A step's check-in written by `save_step`: one UPDATE of what changed, guarded by the
version counter as the ORM's flush is, and nothing written again at the commit."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import select

from bot.storage import steps as q
from bot.storage.database import Database
from bot.storage.tables import Checkin
from tests.statements import statements


async def test_a_step_writes_what_changed_once_and_bumps_the_version(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    async with db.transaction() as session:
        row = await session.get(Checkin, checkin.id)
        assert row is not None and row.version == 1
        row.status, row.state = "in_progress", {"asked": ["phq9.q1"], "answers": {"q1": 2}}
        row.next_reminder_at = now + timedelta(hours=4)
        with statements(db) as seen:
            await q.save_step(session, row)
            await session.flush()  # (what the commit would write: nothing more)
        assert row.version == 2
    updates = [s for s in seen if s.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1 and "version" in updates[0]
    async with db.transaction() as session:
        stored = await session.get(Checkin, checkin.id)
        assert stored is not None
        assert (stored.status, stored.version) == ("in_progress", 2)
        assert stored.state == {"asked": ["phq9.q1"], "answers": {"q1": 2}}
        assert stored.next_reminder_at == now + timedelta(hours=4)


async def test_a_step_leaves_nothing_for_the_next_flush_to_look_at(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """After the step's UPDATE the check-in is no longer marked modified: the session is
    clean, and the statements after it in the turn (each autoflushing) and the commit run
    no flush of it, where before each walked the unit of work to find nothing to write."""
    async with db.transaction() as session:
        row = await session.get(Checkin, checkin.id)
        assert row is not None
        row.status, row.next_reminder_at = "in_progress", now + timedelta(hours=4)
        assert row in session.dirty
        await q.save_step(session, row)
        assert row not in session.dirty
        flushes: list[object] = []
        event.listen(session.sync_session, "before_flush", lambda *a: flushes.append(a))
        await session.get(Checkin, checkin.id)
        await session.exec(select(Checkin.id).where(Checkin.id == checkin.id))
    assert flushes == []
    async with db.transaction() as session:
        stored = await session.get(Checkin, checkin.id)
        assert stored is not None and (stored.status, stored.version) == ("in_progress", 2)


async def test_steps_changing_the_same_columns_reuse_one_statement(
    db: Database, checkin: Checkin, now: datetime
) -> None:
    """The UPDATE of a set of columns is built once (building it cost about as much as
    running it); each step still writes its own values, typed as the columns are (the
    state as JSON, the reminder as a time), and a step changing other columns gets its own."""
    q._step_update.cache_clear()
    for n in range(3):
        async with db.transaction() as session:
            row = await session.get(Checkin, checkin.id)
            assert row is not None
            row.state = {"asked": [f"phq9.q{n + 1}"], "answers": {"q1": n}}
            row.next_reminder_at = now + timedelta(hours=n + 1)
            await q.save_step(session, row)
    assert q._step_update.cache_info().misses == 1
    async with db.transaction() as session:
        row = await session.get(Checkin, checkin.id)
        assert row is not None
        row.status = "in_progress"
        await q.save_step(session, row)
    assert q._step_update.cache_info().misses == 2
    async with db.transaction() as session:
        stored = await session.get(Checkin, checkin.id)
        assert stored is not None
        assert (stored.status, stored.version) == ("in_progress", 5)
        assert stored.state == {"asked": ["phq9.q3"], "answers": {"q1": 2}}
        assert stored.next_reminder_at == now + timedelta(hours=3)


async def test_a_step_on_a_stale_copy_is_refused(db: Database, checkin: Checkin) -> None:
    """Another transaction moved the check-in on after this copy was read: the step
    raises (its transaction rolls back) instead of overwriting the newer state."""
    async with db.transaction() as session:
        row = await session.get(Checkin, checkin.id)  # this copy: version 1
    assert row is not None
    async with db.transaction() as other:
        newer = await other.get(Checkin, checkin.id)
        assert newer is not None
        newer.status = "cancelled"  # version 2
    async with db.transaction() as session:
        session.add(row)
        row.status = "in_progress"
        with pytest.raises(StaleDataError):
            await q.save_step(session, row)
        session.expunge(row)  # (a turn's transaction would roll back on the error)
    async with db.transaction() as session:
        stored = await session.get(Checkin, checkin.id)
        assert stored is not None and (stored.status, stored.version) == ("cancelled", 2)
