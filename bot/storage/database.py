"""The database handle: one async engine per process, built at startup, never at import.

SQLite (the embedded default) runs in WAL mode, foreign keys on,
``synchronous=NORMAL`` and ``secure_delete`` (deleted content is overwritten with zeros).
The writers' connections run on the event loop's thread (``bot.storage.sqlite_driver``),
with no busy timeout (``_begin_immediate`` waits on the loop instead) and no automatic
checkpoint (the tick runs one in a thread, `Database.checkpoint_if_grown`);
every transaction starts with ``BEGIN IMMEDIATE``, so writers queue on the database lock
at the start instead of failing half way through. The database file is created (or
narrowed to) mode 0600 before SQLite opens it; SQLite gives its -wal, -shm and -journal
files the database file's mode, so they are owner-only too. `Database.reading()` is for reads that
must not queue behind writers (``/healthz``, ``/metrics``): on SQLite a deferred
transaction on a query-only connection of its own, which in WAL mode never takes or waits
for the write lock. PostgreSQL
(the scale-out store) uses asyncpg and its default READ COMMITTED isolation; row locks
are taken explicitly where a use case needs them.
"""

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import aiosqlite
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util.concurrency import await_
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage import sqlite_driver

Dialect = Literal["sqlite", "postgresql"]

SQLITE_BUSY_TIMEOUT_MS = 5000
WRITE_TURN_WAIT_S = SQLITE_BUSY_TIMEOUT_MS / 1000  # then past the process's queue (`_WriteTurns`)
# PostgreSQL: the pool of `Database.quick()`, kept apart from the transactions' pool
# (SQLAlchemy's 5 plus 10 overflow).
# Fixed, none opened for a burst: its statements take a millisecond, and a connection
# opened then closed under load costs far more (a first pool of 4 plus 4 did that).
QUICK_POOL_SIZE = 6
# SQLite: the log size past which the tick copies it into the file (SQLite's own default
# is 1,000 pages, about 4 MB); see `Database.checkpoint_if_grown`
WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024
log = logging.getLogger(__name__)
_ASYNC_DRIVERS: dict[str, tuple[Dialect, str]] = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "sqlite+aiosqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgres": ("postgresql", "postgresql+asyncpg"),
    "postgresql": ("postgresql", "postgresql+asyncpg"),
    "postgresql+asyncpg": ("postgresql", "postgresql+asyncpg"),
}


def async_url(url: str | URL) -> URL:
    """`url` with its async driver: ``sqlite://`` -> aiosqlite, ``postgresql://`` -> asyncpg."""
    parsed = make_url(url)
    try:
        _, driver = _ASYNC_DRIVERS[parsed.drivername]
    except KeyError:
        known = ", ".join(sorted(_ASYNC_DRIVERS))
        raise ValueError(
            f"database url: unsupported scheme {parsed.drivername!r} (use one of {known})"
        ) from None
    return parsed.set(drivername=driver)


class Database:
    """An async engine plus a session factory; `transaction()` is the unit of work.

    `foreign_keys=False` turns SQLite's enforcement off; only migrations use it.
    """

    def __init__(self, url: str | URL, *, foreign_keys: bool = True, echo: bool = False) -> None:
        self.url = async_url(url)
        # hide_parameters: a failed statement's message would otherwise carry its values
        # (answers, names, numbers) into logs and tracebacks.
        # SQLite (bot.storage.sqlite_driver): the writers' statements on the loop's thread,
        # the readers' in one trip each to aiosqlite's thread
        sqlite = self.dialect == "sqlite"
        self.engine: AsyncEngine = create_async_engine(
            self.url, echo=echo, hide_parameters=True,
            **({"module": sqlite_driver.INLINE} if sqlite else {}),
        )  # fmt: skip
        if self.dialect == "sqlite":
            sqlite_driver.private_file(self.url.database)
            _configure_sqlite(self.engine, foreign_keys=foreign_keys, turns=_WriteTurns())
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self._reader: AsyncEngine | None = None
        self._quick: AsyncEngine | None = None  # built on first use (`quick()`)
        self._readers = self._sessions
        self._file: str | None = None  # SQLite: the database file's path (`_file_path()`)
        if self.dialect == "sqlite":
            self._reader = create_async_engine(
                self.url, echo=echo, hide_parameters=True, module=sqlite_driver.DBAPI
            )
            _configure_sqlite_reader(self._reader)
            self._readers = async_sessionmaker(
                self._reader, class_=AsyncSession, expire_on_commit=False
            )

    @property
    def dialect(self) -> Dialect:
        """``"sqlite"`` or ``"postgresql"``."""
        return "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error.
        (SQLite: the transaction waits for this process's turn to write at its BEGIN,
        `_WriteTurns`.)"""
        session = self._sessions()
        ended = False
        try:
            async with session.begin():
                yield session
            ended = not session.in_transaction()
        finally:
            await _close(session, ended)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only, which never waits for the write lock (SQLite: a
        deferred, query-only transaction on a connection of its own; PostgreSQL: as
        `transaction()`, whose reads take no lock)."""
        async with self._readers() as session, session.begin():
            yield session

    @property
    def quick_engine(self) -> AsyncEngine:
        """The engine behind `quick()`: on PostgreSQL a small pool of its own (built on
        first use, closed by `dispose()`), on SQLite the main engine."""
        if self.dialect != "postgresql":
            return self.engine
        if self._quick is None:
            self._quick = create_async_engine(
                self.url,
                hide_parameters=True,
                pool_size=QUICK_POOL_SIZE,
                max_overflow=0,
                isolation_level="AUTOCOMMIT",
            )
        return self._quick

    @asynccontextmanager
    async def quick(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one-statement work on the way to a provider (the shared send
        limit). On PostgreSQL every statement is its own transaction (no BEGIN and COMMIT
        round trips), on a pool of its own: fifty turns holding every connection of the
        transactions' pool would otherwise hold back the sends that answer them
        (measured: nothing reached the provider for the first 0.75 s of fifty
        simultaneous crisis turns). On SQLite, one process and one writer, it is a
        transaction of the main engine, committed when the block ends. On the way back from
        the provider, the "sent" marks use it too (`prebuilt.mark_sent_on`)."""
        if self.dialect == "postgresql":
            async with self.quick_engine.connect() as connection:
                yield connection  # the engine is AUTOCOMMIT
        else:
            async with self.engine.begin() as connection:
                yield connection

    @asynccontextmanager
    async def maintenance(self) -> AsyncIterator[aiosqlite.Connection]:
        """SQLite: a connection of its own in aiosqlite's thread, with the busy timeout, for
        statements that wait for other connections (``wal_checkpoint(TRUNCATE)`` waits for
        readers, ``VACUUM`` for everyone). On the writers' connections, which run on the
        loop's thread with no busy timeout, they would give up at once or stop the loop,
        and a reader of this same process could not finish meanwhile."""
        if self.dialect != "sqlite":
            raise ValueError("maintenance() is for SQLite")
        args, kwargs = self.engine.dialect.create_connect_args(self.url)
        async with aiosqlite.connect(*args, **{**kwargs, "isolation_level": None}) as connection:
            await connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            yield connection

    async def checkpoint_if_grown(self, limit_bytes: int = WAL_CHECKPOINT_BYTES) -> bool:
        """SQLite: copy the write-ahead log into the database file once it has grown past
        `limit_bytes`, as SQLite's automatic checkpoint would at about 4 MB; True if it
        ran. The writers' connections have that automatic checkpoint off: it runs inside
        the commit that crosses the limit, which is on the loop's thread now, and a
        checkpoint ends with an fsync of the file. Here it runs in aiosqlite's thread
        (`maintenance()`), called by the scheduler tick. PASSIVE: it copies what no reader
        still needs and waits for no one. PostgreSQL: nothing."""
        if self.dialect != "sqlite" or self.url.database in (None, "", ":memory:"):
            return False
        path = await self._file_path()
        if not path:  # in memory: no log
            return False
        try:
            grown = os.path.getsize(f"{path}-wal") >= limit_bytes
        except OSError:  # no log (yet): nothing to copy
            return False
        if grown:
            async with self.maintenance() as connection:
                cursor = await connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                await cursor.fetchall()
                await cursor.close()
        return grown

    async def _file_path(self) -> str:
        """SQLite: the database file's path as SQLite opened it ("" in memory), asked of
        SQLite once (``PRAGMA database_list``) and kept: a URL's path is not always the
        file's (``sqlite:///file:checkin.db?uri=true`` names it ``file:checkin.db``)."""
        if self._file is None:
            async with self.maintenance() as connection:
                cursor = await connection.execute("PRAGMA database_list")
                listed = await cursor.fetchall()
                await cursor.close()
            self._file = next((str(row[2] or "") for row in listed if row[1] == "main"), "")
        return self._file

    async def refresh_statistics(self, tables: Sequence[str]) -> None:
        """PostgreSQL: ``ANALYZE`` `tables` now. Its planner chooses indexes from
        statistics that autovacuum refreshes about once a minute at best, so a table grown
        from nothing by a wave of check-ins is taken for empty meanwhile, and the index
        for "this patient's check-ins" loses to a scan of every open one (measured: 10 ms
        and more a query on 100,000 rows, 0.3 ms once analyzed). SQLite: nothing."""
        if self.dialect != "postgresql":
            return
        async with self.engine.connect() as connection:
            await connection.execute(text(f"ANALYZE {', '.join(tables)}"))
            await connection.commit()

    async def dispose(self) -> None:
        """Close every pooled connection; the engine can still reconnect if used again."""
        await self.engine.dispose()
        for engine in (self._reader, self._quick):
            if engine is not None:
                await engine.dispose()

    async def __aenter__(self) -> "Database":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.dispose()


async def _close(session: AsyncSession, ended: bool) -> None:
    """Close a transaction's session. `ended` (its transaction committed and its connection
    gone back to the pool), closing it only forgets its objects: done here, with nothing
    to await, so no cancellation can cut it short and no task is needed. Otherwise (the
    block raised, was cancelled, or left a transaction open) SQLAlchemy's own exit closes
    it, in a task of its own that a cancellation does not interrupt (rolling back and
    giving the connection back need the database). A transaction costs ~60 calls less."""
    if ended:
        session.sync_session.close()
        return
    async with session:  # (its __aexit__: the shielded close)
        pass


class _WriteTurns:
    """This process's transactions on one SQLite file, one at a time.

    SQLite has one writer. Pooled connections racing for it lose to SQLite's busy handler,
    which sleeps 1, 2, 5 ... up to 100 ms before it looks again, while the file may have
    been free for most of that. Here a transaction waits at its BEGIN IMMEDIATE for the
    one before it to give its connection back to the pool, and starts the moment it has.
    Other processes on the file still meet the busy timeout.

    Never a hang where the busy timeout used to fail: a transaction begun inside another
    by the same task goes straight to SQLite, as before; one still waiting after
    WRITE_TURN_WAIT_S (the busy timeout) stops waiting and meets SQLite's lock like
    another process's would. A transaction opened but not yet begun holds no turn, so
    one opened around another (which then runs first) costs nothing.
    """

    KEY = "checkin_write_turn"  # in the pool record's info: this connection has the turn

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[Any] | None = None  # whose turn it is

    def take(self, record_info: dict[Any, Any]) -> None:
        """Wait for the turn (in SQLAlchemy's greenlet, at a BEGIN on this connection)."""
        task = asyncio.current_task()
        if record_info.get(self.KEY) or (task is not None and task is self._task):
            return  # this connection has it already, or its task does (nested)
        try:
            await_(asyncio.wait_for(self._lock.acquire(), WRITE_TURN_WAIT_S))
        except TimeoutError:
            log.warning("sqlite: waited %.0f s for this process's turn to write", WRITE_TURN_WAIT_S)
            return
        record_info[self.KEY] = True
        self._task = task

    def give_back(self, record_info: dict[Any, Any]) -> None:
        """The connection is back in the pool (committed, rolled back or invalidated)."""
        if record_info.pop(self.KEY, False):
            self._task = None
            self._lock.release()


def _configure_sqlite(engine: AsyncEngine, *, foreign_keys: bool, turns: _WriteTurns) -> None:
    """Connection pragmas, SQLAlchemy (not pysqlite) in charge of BEGIN IMMEDIATE, and the
    process's transactions taking turns (`_WriteTurns`)."""
    pragmas = (
        "PRAGMA synchronous = NORMAL",
        "PRAGMA secure_delete = ON",  # erased rows are zeroed in the file, not just unlinked
        f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN from the driver
        cursor = dbapi_connection.cursor()
        try:
            # on the loop's thread (sqlite_driver.INLINE) a busy wait would stop the loop:
            # none here, `_begin_immediate` waits for another process's lock instead
            cursor.execute("PRAGMA busy_timeout = 0")
            # nor SQLite's automatic checkpoint, which a commit runs (copying the log into
            # the file, with an fsync): the tick runs one in a thread (`checkpoint_if_grown`)
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
            _use_wal(cursor)
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        turns.take(connection.connection.record_info)
        _begin_immediate(connection)

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        turns.give_back(record.record_info)  # (the same dict as the fairy's record_info)


def _begin_immediate(connection: Any) -> None:
    """``BEGIN IMMEDIATE``, waiting on the loop while another process holds the write lock
    (a `checkin` command, a backup): SQLite refuses at once, as the connection has no busy
    timeout, and it is asked again after a pause that doubles from 1 ms up to 50 ms, for
    SQLITE_BUSY_TIMEOUT_MS in all, as the busy timeout did; then the refusal stands,
    SQLAlchemy's OperationalError as before. This process's own transactions take turns
    (`_WriteTurns`), so they meet here only when nested in another of the same task, when
    one waited past its turn, or behind this process's own `maintenance()`."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                raise
        await_(asyncio.sleep(pause))
        pause = min(pause * 2, 0.05)


def _configure_sqlite_reader(engine: AsyncEngine) -> None:
    """A reader's connections: the busy timeout, no writes (``query_only``), and a plain
    deferred BEGIN, which takes no lock until the first read, and then a shared one."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA query_only = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode (a lasting property of the file).

    Switching needs a moment of exclusive access and SQLite refuses it at once, without
    using the busy timeout, while another connection holds a lock. Our connections
    switch before they take any lock, so that other connection is one switching the same
    file right now, and its switch serves this connection too.
    """
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
