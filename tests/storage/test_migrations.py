"""Migrations: the packaged Alembic scripts build the schema the tables describe."""

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlmodel import SQLModel

import bot.storage.tables  # noqa: F401  (registers the tables)
from bot.storage.database import Database
from bot.storage.migrate import current_revision_async, head_revision, upgrade, upgrade_async


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
