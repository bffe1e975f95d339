"""The SQLite adapters (bot/storage/sqlite_driver.py): a writer's statements run on the
event loop's thread, one call each; a reader's are one trip each to aiosqlite's thread;
and SQLAlchemy still sees what a DB-API cursor gives it (rows, row counts, last row ids,
errors). Another process's write lock is waited for without stopping the loop."""

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage import database, sqlite_driver
from bot.storage.database import SQLITE_BUSY_TIMEOUT_MS, Database


async def sql(session: AsyncSession, statement: str, params: Any = None) -> Any:
    connection = await session.connection()
    return await connection.execute(text(statement), params)


@pytest.fixture
async def scratch(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'scratch.db'}")
    async with database.transaction() as session:
        await sql(session, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    yield database
    await database.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls made to the driver, in order, on the writers' connections (called on the
    loop's thread) and the readers' (queued for aiosqlite's threads): a statement by its
    SQL's first word, anything else by its name. Both drivers' own methods are wrapped, so
    every call is still made."""
    made: list[str] = []

    def counting(original: Any) -> Any:
        async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            name = getattr(fn, "__name__", repr(fn))
            made.append(args[1].split()[0] if name == "_statement" else name)  # its verb
            return await original(self, fn, *args, **kwargs)

        return counted

    for owner in (aiosqlite.Connection, sqlite_driver._Inline):
        monkeypatch.setattr(owner, "_execute", counting(owner._execute))
    return made


async def test_a_select_is_one_trip(scratch: Database, trips: list[str]) -> None:
    """A SELECT in an open transaction costs one trip (SQLAlchemy's own adapter made four:
    cursor, execute, fetch, close)."""
    async with scratch.transaction() as session:
        await sql(session, "INSERT INTO t (v) VALUES ('a'), ('b')")
        trips.clear()
        rows = (await sql(session, "SELECT v FROM t ORDER BY id")).all()
        assert trips == ["SELECT"]
    assert [row.v for row in rows] == ["a", "b"]


async def test_a_transaction_of_two_statements_is_four_trips(
    scratch: Database, trips: list[str]
) -> None:
    """BEGIN IMMEDIATE, two statements and COMMIT: four trips."""
    async with scratch.transaction() as session:
        await sql(session, "INSERT INTO t (v) VALUES ('a')")
        await sql(session, "UPDATE t SET v = 'b'")
    # BEGIN IMMEDIATE, the two statements and the commit; the pool's rollback of the
    # connection given back finds no transaction open and makes no trip
    assert trips == ["BEGIN", "INSERT", "UPDATE", "commit"]


async def test_a_failed_transaction_is_rolled_back(scratch: Database, trips: list[str]) -> None:
    """A transaction that fails still rolls back (one trip), and its row is gone."""

    async def failing() -> None:
        async with scratch.transaction() as session:
            await sql(session, "INSERT INTO t (v) VALUES ('a')")
            raise RuntimeError("the use case failed")

    with pytest.raises(RuntimeError):
        await failing()
    assert trips == ["BEGIN", "INSERT", "rollback"]
    async with scratch.reading() as session:
        assert (await sql(session, "SELECT count(*) FROM t")).scalar() == 0


async def test_counts_ids_and_many(scratch: Database) -> None:
    """Row counts, the last row id and executemany come through."""
    async with scratch.transaction() as session:
        inserted = await sql(session, "INSERT INTO t (v) VALUES ('a')")
        assert inserted.lastrowid == 1
        await sql(session, "INSERT INTO t (v) VALUES (:v)", [{"v": "b"}, {"v": "c"}])
        updated = await sql(session, "UPDATE t SET v = v || '!' WHERE id > 1")
        assert updated.rowcount == 2
        empty = await sql(session, "SELECT v FROM t WHERE id > 99")
        assert empty.all() == []
    async with scratch.reading() as session:
        values = (await sql(session, "SELECT v FROM t ORDER BY id")).scalars().all()
    assert values == ["a", "b!", "c!"]


async def test_errors_reach_the_caller_and_roll_back(scratch: Database) -> None:
    """A constraint broken mid-transaction raises SQLAlchemy's IntegrityError and rolls the
    transaction back; a bad statement raises OperationalError naming the problem."""

    async def in_transaction(*statements: str) -> None:
        async with scratch.transaction() as session:
            for statement in statements:
                await sql(session, statement)

    with pytest.raises(IntegrityError):
        await in_transaction("INSERT INTO t (v) VALUES ('a')", "INSERT INTO t (v) VALUES ('a')")
    with pytest.raises(OperationalError, match="no such table: missing"):
        await in_transaction("SELECT * FROM missing")
    async with scratch.transaction() as session:
        count = (await sql(session, "SELECT count(*) FROM t")).scalar()
    assert count == 0


async def test_streaming_still_fetches_in_pieces(scratch: Database) -> None:
    """A streamed result (a server-side cursor) reads rows as asked, across trips."""
    async with scratch.transaction() as session:
        await sql(session, "INSERT INTO t (v) VALUES (:v)", [{"v": str(n)} for n in range(250)])
    async with scratch.engine.connect() as connection:
        result = await connection.stream(text("SELECT v FROM t ORDER BY id"))
        seen = [row.v async for row in result]
    assert seen == [str(n) for n in range(250)]


def two_writers(
    scratch: Database,
) -> tuple[asyncio.Event, asyncio.Event, asyncio.Task[None], asyncio.Task[None]]:
    """Two tasks, each inserting its name ('first', 'second') in a transaction of its
    own: the first, once its INSERT is done, sets `first_in` and keeps its transaction
    open until `let_go` is set; the second starts once `first_in` is set."""
    first_in, let_go = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with scratch.transaction() as session:
            await sql(session, "INSERT INTO t (v) VALUES ('first')")
            first_in.set()
            await let_go.wait()

    async def second() -> None:
        await first_in.wait()
        async with scratch.transaction() as session:
            await sql(session, "INSERT INTO t (v) VALUES ('second')")

    return first_in, let_go, asyncio.create_task(first()), asyncio.create_task(second())


async def test_this_processs_transactions_take_turns(scratch: Database, trips: list[str]) -> None:
    """A second transaction does not begin (no BEGIN IMMEDIATE reaches SQLite, to sleep in
    its busy handler) until the first has committed; then it runs at once."""
    first_in, let_go, one, two = two_writers(scratch)
    await first_in.wait()
    for _ in range(20):
        await asyncio.sleep(0.01)  # time enough for the second to reach SQLite if it could
    # (the second may open a connection meanwhile: its set-up is not a transaction)
    work = ("BEGIN", "INSERT", "commit")
    assert [trip for trip in trips if trip in work] == ["BEGIN", "INSERT"]  # the first's
    let_go.set()
    await asyncio.gather(one, two)
    assert [trip for trip in trips if trip in work][2:] == ["commit", "BEGIN", "INSERT", "commit"]
    async with scratch.reading() as session:
        rows = (await sql(session, "SELECT v FROM t ORDER BY id")).scalars().all()
    assert rows == ["first", "second"]


async def test_a_turn_waited_for_too_long_goes_to_sqlite_instead_of_hanging(
    scratch: Database, trips: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that cannot get its turn within the busy timeout (here shortened)
    stops waiting and meets SQLite's own lock, as another process's would: a task that
    waits on one waiting for it fails after the busy timeout instead of hanging."""
    monkeypatch.setattr(database, "WRITE_TURN_WAIT_S", 0.1)
    held, let_go, first, second = two_writers(scratch)
    await held.wait()
    await asyncio.sleep(0.3)
    assert trips.count("BEGIN") >= 2  # the waiter's reached SQLite (and asks again there)
    assert trips.count("INSERT") == 1
    let_go.set()
    await asyncio.gather(first, second)
    async with scratch.reading() as session:
        rows = (await sql(session, "SELECT v FROM t ORDER BY id")).scalars().all()
    assert rows == ["first", "second"]


async def test_a_transaction_inside_another_of_the_same_task_does_not_hang(
    scratch: Database,
) -> None:
    """Nested in the same task, a transaction does not wait for the turn its own task
    holds: it reaches SQLite, whose busy timeout fails it, as before the turns."""

    async def nested() -> None:
        async with scratch.transaction() as outer:
            await sql(outer, "INSERT INTO t (v) VALUES ('outer')")
            async with scratch.transaction() as inner:
                await sql(inner, "INSERT INTO t (v) VALUES ('inner')")

    with pytest.raises(OperationalError, match="database is locked"):
        await asyncio.wait_for(nested(), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000 + 5)


async def test_a_transaction_opened_around_another_holds_no_turn(scratch: Database) -> None:
    """A transaction that has not begun (no statement yet) holds no turn: another task's
    transaction run inside it goes at once, as it did before the turns."""

    async def own() -> None:
        async with scratch.transaction() as session:
            await sql(session, "INSERT INTO t (v) VALUES ('inside')")

    async with scratch.transaction() as outer:
        await asyncio.wait_for(own(), timeout=database.WRITE_TURN_WAIT_S / 2)
        await sql(outer, "INSERT INTO t (v) VALUES ('outer')")
    async with scratch.reading() as session:
        rows = (await sql(session, "SELECT v FROM t ORDER BY id")).scalars().all()
    assert rows == ["inside", "outer"]


def _thread_of_sql(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function("thread_of_sql", 0, threading.get_ident)


async def test_writers_run_on_the_loops_thread_and_readers_do_not(scratch: Database) -> None:
    """A transaction's statements run on the event loop's own thread (no trip to another);
    a reader's still run in aiosqlite's thread, where a long read leaves the loop free."""
    for engine in (scratch.engine, scratch._reader):
        assert engine is not None
        await engine.dispose()  # connections made from here on get the function
        event.listen(engine.sync_engine, "connect", _thread_of_sql)
    async with scratch.transaction() as session:
        writer = (await sql(session, "SELECT thread_of_sql()")).scalar()
    async with scratch.reading() as session:
        reader = (await sql(session, "SELECT thread_of_sql()")).scalar()
    assert writer == threading.get_ident()
    assert reader != threading.get_ident()


async def test_another_process_lock_is_waited_for_without_stopping_the_loop(
    scratch: Database, tmp_path: Path
) -> None:
    """Another connection (another process's, say) holds the write lock for 0.3 s: the
    transaction begins once it is free, and the loop kept running meanwhile (a busy wait
    on the loop's thread would have stopped it for the whole 0.3 s)."""
    other = sqlite3.connect(tmp_path / "scratch.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    beats = 0

    async def heart() -> None:
        nonlocal beats
        while True:
            await asyncio.sleep(0.01)
            beats += 1

    async def let_go() -> None:
        await asyncio.sleep(0.3)
        other.execute("COMMIT")

    beating, freeing = asyncio.create_task(heart()), asyncio.create_task(let_go())
    async with scratch.transaction() as session:
        await sql(session, "INSERT INTO t (v) VALUES ('after')")
    assert freeing.done()  # it began only once the lock was free
    beating.cancel()
    other.close()
    assert beats >= 15  # 0.3 s at 10 ms a beat, less the loop's own delays
    async with scratch.reading() as session:
        assert (await sql(session, "SELECT v FROM t")).scalars().all() == ["after"]


async def test_a_lock_held_past_the_busy_timeout_still_fails(
    scratch: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held longer than SQLITE_BUSY_TIMEOUT_MS (shortened here), the lock fails the
    transaction with SQLAlchemy's OperationalError, as the busy timeout did."""
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 200)
    other = sqlite3.connect(tmp_path / "scratch.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            async with scratch.transaction() as session:
                await sql(session, "INSERT INTO t (v) VALUES ('never')")
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with scratch.transaction() as session:  # and the connection is fine afterwards
        await sql(session, "INSERT INTO t (v) VALUES ('later')")
    async with scratch.reading() as session:
        assert (await sql(session, "SELECT v FROM t")).scalars().all() == ["later"]


def _rows_in_the_file_alone(database: Path, copy: Path) -> int:
    """The rows of `t` in the database file itself, without its write-ahead log: what a
    checkpoint has copied into it."""
    shutil.copyfile(database, copy)
    plain = sqlite3.connect(copy)
    try:
        return int(plain.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:  # the table itself is still only in the log
        return 0
    finally:
        plain.close()


async def test_the_log_is_copied_into_the_file_by_the_tick_not_by_a_commit(
    scratch: Database, tmp_path: Path
) -> None:
    """Writers have SQLite's automatic checkpoint off (it would run inside a commit, on
    the loop's thread, with an fsync); `checkpoint_if_grown` copies the log into the file
    once it passes its limit, from aiosqlite's thread."""
    async with scratch.engine.connect() as connection:
        automatic = (await connection.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar()
    assert automatic == 0
    async with scratch.transaction() as session:
        await sql(session, "INSERT INTO t (v) VALUES (:v)", [{"v": str(n)} for n in range(100)])
    file, copy = tmp_path / "scratch.db", tmp_path / "copy.db"
    log = (tmp_path / "scratch.db-wal").stat().st_size
    assert _rows_in_the_file_alone(file, copy) == 0  # all in the log so far
    assert not await scratch.checkpoint_if_grown(limit_bytes=log + 1)  # not grown enough
    assert _rows_in_the_file_alone(file, copy) == 0
    assert await scratch.checkpoint_if_grown(limit_bytes=log)
    assert _rows_in_the_file_alone(file, copy) == 100


async def test_the_log_of_a_database_named_by_a_file_uri_is_copied_too(tmp_path: Path) -> None:
    """A ``sqlite:///file:...?uri=true`` URL's path is not the file's: the file is found
    through SQLite itself, so its log is still copied once it passes the limit."""
    file, copy = tmp_path / "uri.db", tmp_path / "copy.db"
    named = Database(f"sqlite:///file:{file}?uri=true")
    try:
        async with named.transaction() as session:
            await sql(session, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
            await sql(session, "INSERT INTO t (v) VALUES (:v)", [{"v": str(n)} for n in range(100)])
        log = (tmp_path / "uri.db-wal").stat().st_size
        assert _rows_in_the_file_alone(file, copy) == 0  # all in the log so far
        assert not await named.checkpoint_if_grown(limit_bytes=log + 1)
        assert await named.checkpoint_if_grown(limit_bytes=log)
        assert _rows_in_the_file_alone(file, copy) == 100
    finally:
        await named.dispose()
