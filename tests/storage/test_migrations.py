"""Migrations: the packaged Alembic scripts build the schema the tables describe."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Row, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

import bot.storage.tables  # noqa: F401  (registers the tables)
from bot.storage.database import Database
from bot.storage.migrate import current_revision_async, head_revision, upgrade, upgrade_async
from bot.storage.repository import Repository
from bot.storage.tables import Patient

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


async def test_upgrade_creates_every_table_from_empty(db_url: str) -> None:
    """The synchronous upgrade() turns an empty database into the full schema at head."""
    await asyncio.to_thread(upgrade, db_url)
    async with Database(db_url) as database, database.engine.connect() as connection:
        tables = await connection.run_sync(_table_names)
    assert tables == set(SQLModel.metadata.tables) | {"alembic_version"}
    assert await current_revision_async(db_url) == head_revision()


async def test_upgrade_twice_is_harmless(db_url: str) -> None:
    """A second upgrade on a current database changes nothing and raises nothing."""
    await upgrade_async(db_url)
    await upgrade_async(db_url)
    assert await current_revision_async(db_url) == head_revision()


async def test_empty_database_has_no_revision(db_url: str) -> None:
    """An unmigrated database reports no revision."""
    assert await current_revision_async(db_url) is None


async def test_migrations_match_the_tables(db_url: str) -> None:
    """Autogenerate finds no difference between the migrated schema and the SQLModel tables."""
    await upgrade_async(db_url)
    async with Database(db_url) as database, database.engine.connect() as connection:
        diff = await connection.run_sync(_schema_diff)
    assert diff == []


async def test_concurrent_upgrades_migrate_once(db_url: str) -> None:
    """Two processes starting together (two upgrades at once) both succeed, at head."""
    await asyncio.gather(upgrade_async(db_url), upgrade_async(db_url))
    assert await current_revision_async(db_url) == head_revision()


async def test_answers_become_append_only_keeping_every_stored_answer(db_url: str) -> None:
    """0010 keeps each answer stored before it, as the current answer to its item; after it,
    an item holds one current answer however many superseded ones it has."""
    await upgrade_async(db_url, "0009")
    async with Database(db_url) as database:
        async with database.transaction() as session:
            patient = Patient(display_name="Ada", timezone="UTC", channel="console", address="a")
            await Repository(session).add(patient)
            assert patient.id is not None
        (checkin,) = await _execute(database, _OLD_CHECKIN, p=patient.id, at=T0)
        for item, value in (("phq9.q1", 2), ("phq9.q9", 1)):
            await _execute(database, _OLD_ANSWER, c=checkin.id, k=item, v=value, at=T0)
        await database.dispose()
    await upgrade_async(db_url)
    async with Database(db_url) as database:
        rows = await _execute(database, "SELECT item_key, value_int, superseded_by, "
                              "superseded_at FROM answer ORDER BY id")  # fmt: skip
        assert [tuple(r) for r in rows] == [("phq9.q1", 2, None, None), ("phq9.q9", 1, None, None)]
        await _execute(database, "UPDATE answer SET superseded_at = :at WHERE item_key = 'phq9.q9'",
                       at=T0)  # fmt: skip
        await _execute(database, _OLD_ANSWER, c=checkin.id, k="phq9.q9", v=0, at=T0)
        with pytest.raises(IntegrityError):  # a second current answer to phq9.q1
            await _execute(database, _OLD_ANSWER, c=checkin.id, k="phq9.q1", v=3, at=T0)


_OLD_CHECKIN = (  # the check-in as stored before 0011 (its state in plain JSON)
    "INSERT INTO checkin (patient_id, idempotency_key, instruments, status, due_at, expires_at,"
    " reminders_sent, max_reminders, origin, partial, ignore_quiet_hours, state, version,"
    " created_at) VALUES (:p, 'k', '[\"phq9\"]', 'pending', :at, :at, 0, 0, 'operator', false,"
    " false, '{}', 1, :at) RETURNING id"
)
_OLD_ANSWER = (
    "INSERT INTO answer (checkin_id, item_key, instrument, value_int, raw_text, answered_at) "
    "VALUES (:c, :k, 'phq9', :v, '', :at)"
)


async def _execute(database: Database, sql: str, **params: object) -> list[Row[Any]]:
    async with database.engine.begin() as connection:
        result = await connection.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []
