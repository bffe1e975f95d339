"""The audit chain on real SQLite and PostgreSQL: appends link up, tampering is found."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from bot.storage import audit
from bot.storage.database import Database
from bot.storage.migrate import upgrade_async
from bot.storage.repository import Repository
from bot.storage.tables import AuditEvent, Patient

T0 = datetime(2026, 5, 4, 9, 0, 0, 123456, tzinfo=UTC)


async def appended(db: Database, count: int) -> list[AuditEvent]:
    """`count` events, two per transaction where possible, and the stored rows."""
    for n in range(0, count, 2):
        async with db.transaction() as session:
            repo = Repository(session)
            for k in range(n, min(n + 2, count)):
                at = T0 + timedelta(minutes=k)
                await repo.audit(at, "operator", "patient_viewed", f"patient:{k}", n=k, ok=True)
    async with db.transaction() as session:
        return list((await session.exec(select(AuditEvent).order_by(col(AuditEvent.id)))).all())


async def sql(db: Database, *statements: str) -> None:
    async with db.engine.begin() as connection:
        for statement in statements:
            await connection.exec_driver_sql(statement)


async def test_appends_form_a_valid_chain(db: Database) -> None:
    """Each event carries the previous one's hash; the walk checks all and reports the head."""
    rows = await appended(db, 5)
    assert rows[0].prev_hash == audit.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    seen: list[int] = []
    report = await audit.verify(db, page_size=2, progress=seen.append)
    assert report.ok and report.checked == 5
    assert (report.head_id, report.head_hash) == (rows[-1].id, rows[-1].hash)
    assert seen == [2, 4, 5]


async def test_an_empty_trail_verifies(db: Database) -> None:
    """No events: nothing to check, nothing broken."""
    report = await audit.verify(db)
    assert report.ok and report.checked == 0 and report.head_hash == audit.GENESIS


async def test_altering_one_detail_is_found(db: Database) -> None:
    """Changing one event's detail breaks that event's own hash."""
    rows = await appended(db, 6)
    await sql(
        db, f'UPDATE audit_event SET detail = \'{{"n": 99, "ok": true}}\' WHERE id = {rows[3].id}'
    )
    report = await audit.verify(db, page_size=4)
    assert (report.ok, report.broken_id, report.checked) == (False, rows[3].id, 3)
    assert "altered" in report.problem


async def test_altering_the_time_or_actor_is_found(db: Database) -> None:
    """Every hashed column counts, the timestamp and the actor included."""
    rows = await appended(db, 3)
    await sql(db, f"UPDATE audit_event SET actor = 'system' WHERE id = {rows[0].id}")
    assert (await audit.verify(db)).broken_id == rows[0].id
    await sql(
        db,
        f"UPDATE audit_event SET actor = 'operator' WHERE id = {rows[0].id}",
        f"UPDATE audit_event SET at = (SELECT at FROM audit_event WHERE id = {rows[2].id}) "
        f"WHERE id = {rows[1].id}",
    )
    assert (await audit.verify(db)).broken_id == rows[1].id


async def test_deleting_one_row_is_found(db: Database) -> None:
    """The event after a deleted one no longer follows its predecessor."""
    rows = await appended(db, 5)
    await sql(db, f"DELETE FROM audit_event WHERE id = {rows[2].id}")
    report = await audit.verify(db)
    assert (report.broken_id, report.checked) == (rows[3].id, 2)
    assert "does not follow" in report.problem


async def test_reordering_two_rows_is_found(db: Database) -> None:
    """Swapping two events' ids (their order) breaks the chain at the first of them."""
    rows = await appended(db, 4)
    a, b = rows[1].id, rows[2].id
    await sql(
        db,
        f"UPDATE audit_event SET id = -1 WHERE id = {a}",
        f"UPDATE audit_event SET id = {a} WHERE id = {b}",
        f"UPDATE audit_event SET id = {b} WHERE id = -1",
    )
    report = await audit.verify(db)
    assert report.broken_id == a and "does not follow" in report.problem


async def test_a_row_written_around_the_chain_is_found(db: Database) -> None:
    """An event added without Repository.audit (no hashes) is refused by the walk."""
    rows = await appended(db, 2)
    async with db.transaction() as session:
        session.add(AuditEvent(at=T0, actor="operator", action="forged", subject="patient:1"))
    report = await audit.verify(db)
    assert report.broken_id == rows[-1].id + 1  # type: ignore[operator]


async def test_a_rolled_back_transaction_leaves_no_event(db: Database) -> None:
    """An event buffered in a transaction that fails is never written."""
    try:
        async with db.transaction() as session:
            await Repository(session).audit(T0, "operator", "patient_viewed", "patient:1")
            raise RuntimeError("the use case failed")
    except RuntimeError:
        pass
    await appended(db, 1)
    report = await audit.verify(db)
    assert report.ok and report.checked == 1


async def test_listing_by_subject(db: Database) -> None:
    """events() returns the newest events about one subject, oldest first."""
    await appended(db, 4)
    async with db.transaction() as session:
        about = await audit.events(session, subject="patient:2")
        newest = await audit.events(session, limit=2)
    assert [e.detail["n"] for e in about] == [2]
    assert [e.detail["n"] for e in newest] == [2, 3]


async def test_concurrent_appends_keep_the_chain_valid(pg_db: Database) -> None:
    """Twelve PostgreSQL transactions in flight at once, two holding a patient row lock
    before they audit and two after, the rest none: all commit (no deadlock) and the
    chain stays valid (without the advisory lock, the free ones fork it)."""
    async with pg_db.transaction() as session:
        patient = Patient(display_name="x", timezone="UTC", channel="console", address="c-1")
        await Repository(session).add(patient)
    assert patient.id is not None
    patient_id = patient.id

    async def one(n: int) -> None:
        async with pg_db.transaction() as session:
            repo = Repository(session)
            if n in (0, 1):
                await repo.lock_patient(patient_id)
            await repo.audit(T0, "operator", "probe", f"patient:{patient_id}", n=n)
            await asyncio.sleep(0.02)  # every transaction is open at the same time
            await repo.audit(T0, "operator", "probe", f"patient:{patient_id}", n=n, second=True)
            if n in (2, 3):
                await repo.lock_patient(patient_id)

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(12))), timeout=30)
    report = await audit.verify(pg_db)
    assert report.ok and report.checked == 24


async def test_the_migration_chains_existing_events(db_url: str) -> None:
    """Events written before revision 0006 are chained by it; the walk then passes."""
    await upgrade_async(db_url, "0004")
    async with Database(db_url) as db:
        for n in range(3):
            await sql(
                db,
                "INSERT INTO audit_event (at, actor, action, subject, detail) VALUES "
                f"('2026-05-0{n + 1} 09:00:00{'+00:00' if db.dialect == 'postgresql' else ''}', "
                f"'operator', 'patient_added', 'patient:{n}', '{{\"n\": {n}}}')",
            )
    await upgrade_async(db_url)
    async with Database(db_url) as db:
        report = await audit.verify(db)
        assert report.ok and report.checked == 3
        await appended(db, 1)
        assert (await audit.verify(db)).checked == 4


async def test_a_savepoint_rolled_back_drops_only_the_events_appended_inside_it(
    db: Database,
) -> None:
    """A transaction that rolls back a savepoint (an alert that could not be raised, say)
    and commits keeps the events it appended outside the savepoint, and drops only those
    appended inside it, with the writes they describe."""
    async with db.transaction() as session:
        repo = Repository(session)
        await repo.audit(T0, "operator", "patient_viewed", "patient:1", n=1)
        try:
            async with session.begin_nested():
                await repo.audit(T0, "operator", "patient_viewed", "patient:2", n=2)
                raise LookupError
        except LookupError:
            pass
        async with session.begin_nested():  # a savepoint released: its events stay
            await repo.audit(T0, "operator", "patient_viewed", "patient:3", n=3)
        await repo.audit(T0, "operator", "patient_viewed", "patient:4", n=4)
    async with db.transaction() as session:
        rows = (await session.exec(select(AuditEvent).order_by(col(AuditEvent.id)))).all()
    assert [row.subject for row in rows] == ["patient:1", "patient:3", "patient:4"]
    assert (await audit.verify(db)).ok
