"""The database handle: URLs, SQLite settings, and transactions that commit or roll back."""

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.database import Database, async_url
from bot.storage.repository import Repository
from bot.storage.tables import Patient


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///checkin.db", "sqlite+aiosqlite:///checkin.db"),
        ("sqlite+aiosqlite:///checkin.db", "sqlite+aiosqlite:///checkin.db"),
        ("postgresql://u@db/checkin", "postgresql+asyncpg://u@db/checkin"),
        ("postgres://u@db/checkin", "postgresql+asyncpg://u@db/checkin"),
        ("postgresql+asyncpg://u@db/checkin", "postgresql+asyncpg://u@db/checkin"),
    ],
)
def test_plain_urls_get_async_drivers(given: str, expected: str) -> None:
    """Plain sqlite:// and postgresql:// URLs are switched to aiosqlite and asyncpg."""
    assert async_url(given).render_as_string(hide_password=False) == expected


def test_unsupported_url_is_refused() -> None:
    """A URL for another database is refused with a message that names the scheme."""
    with pytest.raises(ValueError, match="mysql"):
        async_url("mysql://u@db/checkin")


async def test_dialect_names_the_backend(db: Database, dialect: str) -> None:
    """`dialect` is 'sqlite' or 'postgresql' according to the URL."""
    assert db.dialect == dialect


async def test_sqlite_file_is_in_wal_mode(sqlite_db: Database, sqlite_url: str) -> None:
    """The SQLite file is in WAL mode, seen both by our connection and by a plain sqlite3 one."""
    async with sqlite_db.engine.connect() as connection:
        mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
    assert mode == "wal"
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    plain.close()


async def test_sqlite_connection_pragmas(sqlite_db: Database) -> None:
    """Every SQLite connection has foreign keys on and synchronous=NORMAL. A writer's has
    no busy timeout (it runs on the loop's thread, where a busy wait would stop the loop;
    its BEGIN waits in asyncio.sleep instead); a reader's has the busy timeout."""
    names = ("foreign_keys", "busy_timeout", "synchronous")
    async with sqlite_db.engine.connect() as connection:
        writer = {n: (await connection.exec_driver_sql(f"PRAGMA {n}")).scalar() for n in names}
    async with sqlite_db.reading() as session:
        connection = await session.connection()
        reader = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    assert writer == {"foreign_keys": 1, "busy_timeout": 0, "synchronous": 1}
    assert reader == 5000


async def test_sqlite_transactions_begin_immediate(sqlite_db: Database, sqlite_url: str) -> None:
    """A transaction holds SQLite's write lock from its start, even before it writes."""
    path = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    async with sqlite_db.transaction() as session:
        await session.exec(select(Patient))
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


async def _add(db: Database, row: Patient, fail: bool = False) -> None:
    async with db.transaction() as session:
        await Repository(session).add(row)
        if fail:
            raise RuntimeError("use case failed")


def _patient(**fields: object) -> Patient:
    return Patient.model_validate(
        {"display_name": "A", "timezone": "UTC", "channel": "sms", **fields}
    )


async def test_transaction_commits_on_success(db: Database) -> None:
    """Rows written inside `transaction()` are visible to the next transaction."""
    await _add(db, _patient())
    async with db.transaction() as session:
        assert len((await session.exec(select(Patient))).all()) == 1


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    """An exception inside `transaction()` undoes every write of that transaction."""
    with pytest.raises(RuntimeError):
        await _add(db, _patient(), fail=True)
    async with db.transaction() as session:
        assert (await session.exec(select(Patient))).all() == []


@pytest.mark.parametrize("ending", ["committed", "raised", "cancelled"])
async def test_a_transaction_ends_closed_and_its_connection_back_in_the_pool(
    db: Database, ending: str
) -> None:
    """However the block ends, the session is closed as SQLAlchemy's own exit closes it
    (its objects forgotten, no transaction left) and no connection stays checked out:
    the committed way closes it in place, the others through the shielded close."""
    patient = _patient()
    seen: list[AsyncSession] = []

    async def block() -> None:
        async with db.transaction() as session:
            seen.append(session)
            await Repository(session).add(patient)
            if ending == "raised":
                raise RuntimeError("undone")
            if ending == "cancelled":
                await asyncio.sleep(3600)

    task = asyncio.create_task(block())
    await asyncio.sleep(0.05)
    if ending == "cancelled":
        task.cancel()
    with contextlib.suppress(RuntimeError, asyncio.CancelledError):
        await task
    (session,) = seen
    assert not session.in_transaction() and patient not in session
    assert db.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with db.transaction() as later:
        count = len((await later.exec(select(Patient))).all())
    assert count == (1 if ending == "committed" else 0)


async def test_check_constraints_refuse_unknown_values(db: Database) -> None:
    """A status outside the closed set is refused by the database itself."""
    with pytest.raises(IntegrityError):
        await _add(db, _patient(status="asleep"))


async def test_foreign_keys_are_enforced(db: Database) -> None:
    """A patient pointing at a clinician that does not exist is refused (SQLite included)."""
    with pytest.raises(IntegrityError):
        await _add(db, _patient(clinician_id=999))


async def _reltuples(db: Database, table: str) -> float:
    async with db.transaction() as session:
        found = await session.exec(
            text("SELECT reltuples FROM pg_class WHERE relname = :t").bindparams(t=table)
        )
        return float(found.one()[0])


async def test_refreshing_statistics_analyzes_on_postgresql(pg_db: Database) -> None:
    """After a bulk insert the planner's row estimate is stale (37 rows are below
    autovacuum's threshold, so it never analyzes them); `refresh_statistics` brings it up
    to date."""
    async with pg_db.transaction() as session:
        existing = len((await session.exec(select(Patient))).all())
        for n in range(37):
            session.add(Patient(display_name="x", timezone="UTC", channel="console",
                                address=f"stats-{n}"))  # fmt: skip
    assert await _reltuples(pg_db, "patient") != existing + 37
    await pg_db.refresh_statistics(["patient"])
    assert await _reltuples(pg_db, "patient") == existing + 37


async def test_refreshing_statistics_is_nothing_on_sqlite(sqlite_db: Database) -> None:
    """SQLite has no autovacuum lag to make up for: nothing is run, nothing fails."""
    await sqlite_db.refresh_statistics(["patient", "checkin"])
    async with sqlite_db.transaction() as session:
        found = await session.exec(
            text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        )
        assert found.one()[0] == 0


async def test_a_quick_connections_writes_are_kept(db: Database) -> None:
    """`quick()` (the send limit's connection) commits what it writes on both stores:
    autocommit on PostgreSQL's own pool, a committed transaction on SQLite."""
    async with db.quick() as connection:
        await connection.execute(text("CREATE TABLE quick_probe (n integer)"))
        await connection.execute(text("INSERT INTO quick_probe VALUES (1)"))
    async with db.quick() as connection:
        await connection.execute(text("INSERT INTO quick_probe VALUES (2)"))
    async with db.engine.connect() as connection:
        found = await connection.execute(text("SELECT n FROM quick_probe ORDER BY n"))
        assert found.scalars().all() == [1, 2]
        await connection.execute(text("DROP TABLE quick_probe"))
        await connection.commit()
