"""Schema migrations, run programmatically: no alembic.ini, the scripts ship in the package.

``upgrade(url)`` brings a database to the newest revision and is safe to repeat. It runs in
one transaction: on PostgreSQL behind an advisory lock (two processes starting together
migrate once), on SQLite behind ``BEGIN IMMEDIATE`` with foreign-key enforcement off (as
SQLite's table-rebuild procedure requires) and a ``foreign_key_check`` before commit.
Inside a running event loop use the ``*_async`` variants.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.config import Settings
from bot.storage.database import Database
from bot.storage.keys import ensure_key_file, install_keys
from bot.storage.rotation import compact_sqlite

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 7_305_917_441  # any constant shared by every process of this service


def alembic_config(connection: Connection | None = None) -> Config:
    """An in-memory Alembic config pointing at the packaged scripts."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision the packaged scripts define."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def passes_through(before: str | None, revision: str) -> bool:
    """Whether upgrading a database at `before` to head runs `revision` (False if unmigrated)."""
    if before is None:
        return False
    script = ScriptDirectory.from_config(alembic_config())
    return any(step.revision == revision for step in script.iterate_revisions("heads", before))


async def upgrade_async(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision`."""
    async with _migration_connection(url) as connection:
        await connection.run_sync(_upgrade, revision)


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (not from inside an event loop)."""
    asyncio.run(upgrade_async(url, revision))


async def current_revision_async(url: str | URL) -> str | None:
    """The revision the database at `url` is at, or None for an unmigrated database."""
    async with _migration_connection(url) as connection:
        return await connection.run_sync(_current_revision)


def current_revision(url: str | URL) -> str | None:
    """The revision the database at `url` is at (not from inside an event loop)."""
    return asyncio.run(current_revision_async(url))


async def make_revision_async(url: str | URL, message: str, rev_id: str) -> None:
    """Write a new revision script into the package, comparing the tables with the database.

    For developers: point `url` at a scratch database already at head, e.g.
    ``asyncio.run(make_revision_async("sqlite:///scratch.db", "add x", "0002"))``, then
    read and adjust the generated file.
    """
    async with _migration_connection(url) as connection:
        await connection.run_sync(_revision, message, rev_id)


async def upgrade_with_keys(settings: Settings) -> Path | None:
    """Make the key file if there is none, migrate with the key ring installed, and on
    SQLite compact the file when this upgrade encrypted (0007, 0011) or hashed (0011) values
    stored in plaintext before.
    Returns the key file it created, if any."""
    url = settings.database_url
    created = await ensure_key_file(settings)
    install_keys(settings)
    before = await current_revision_async(url)
    await upgrade_async(url)
    if passes_through(before, "0007") or passes_through(before, "0011"):
        async with Database(url) as db:
            await compact_sqlite(db)
    return created


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _revision(connection: Connection, message: str, rev_id: str) -> None:
    command.revision(alembic_config(connection), message, autogenerate=True, rev_id=rev_id)


@asynccontextmanager
async def _migration_connection(url: str | URL) -> AsyncIterator[AsyncConnection]:
    """One connection in one transaction, locked against concurrent migrations."""
    database = Database(url, foreign_keys=False)
    try:
        async with database.engine.begin() as connection:
            if database.dialect == "postgresql":
                await connection.exec_driver_sql(
                    f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"
                )
            yield connection
            if database.dialect == "sqlite":
                await _check_foreign_keys(connection)
    finally:
        await database.dispose()


async def _check_foreign_keys(connection: AsyncConnection) -> None:
    result = await connection.exec_driver_sql("PRAGMA foreign_key_check")
    broken = result.fetchall()
    if broken:
        raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")
