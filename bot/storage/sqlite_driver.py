"""SQLite through aiosqlite in one trip to its thread per statement.

aiosqlite runs each SQLite connection in a thread of its own; every call is a trip there
and back (a queue, a thread wake-up, a wake-up of the event loop). SQLAlchemy's adapter
makes three or four of them for one statement: create the cursor, execute, fetch the rows,
close the cursor. Measured on the two-core bench machine: about 270 µs of CPU for
``SELECT 1`` that way, 60 µs in one trip, 1.5 µs for SQLite's own work; a check-in turn
runs some twenty statements (with BEGIN and COMMIT), several milliseconds of CPU for
trips alone. This adapter's cursor runs the whole statement (execute, fetch every row,
close) in one trip and keeps what SQLAlchemy reads afterwards (rows, description, rowcount,
last row id); and the pool's rollback of a connection given back after its commit, which
has nothing to roll back, makes no trip at all. Everything else is SQLAlchemy's own
aiosqlite dialect: pass :data:`DBAPI` as ``module=`` to ``create_async_engine`` for a
``sqlite+aiosqlite`` URL.

Server-side cursors (``stream()``) stay SQLAlchemy's, a trip per fetch, as they must.

:data:`INLINE` goes further, for the connections that write: no thread at all. Each
statement runs on the event loop's thread, where SQLAlchemy's greenlet already is, and a
transaction that awaits nothing but its statements never gives the loop up. Measured on
the turns bench, the trips to the thread and back (its queue, the loop's self-pipe, the
future's callbacks) were about a tenth of the process's CPU. The thread bought one thing,
waiting for another process's lock without stopping the loop: an inline connection has
no busy timeout, and its ``BEGIN IMMEDIATE`` waits for that lock in ``asyncio.sleep``
instead (bot/storage/database.py, ``_begin_immediate``). Everything goes through
``_Inline._execute``, which calls at once, so there is one place to watch.

Two kinds of work keep aiosqlite's thread: reads on a connection of their own
(`Database.reading()`: health checks, the panel), where a long read leaves the loop free;
and statements that wait for other connections by design (a checkpoint that truncates the
log, ``VACUUM``: `Database.maintenance()`). A writer's server-side cursor is aiosqlite's
cursor class, whose calls come back to ``_Inline._execute``.
It reaches into aiosqlite for two names, ``Connection._execute`` (queue a call for the
connection's thread) and ``Connection._conn`` (the sqlite3 connection, read in that
thread); both are checked at import, so an aiosqlite without them fails at start-up,
not on the first statement.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import stat
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, int, int | None, list[Any]]  # description, rowcount, lastrowid, rows

for _name in ("_execute", "_conn"):
    if not hasattr(aiosqlite.Connection, _name):  # pragma: no cover -- an aiosqlite we do not know
        raise ImportError(f"aiosqlite {aiosqlite.__version__} has no Connection.{_name}")


def _statement(
    connection: aiosqlite.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """Run in the connection's thread: execute, fetch every row, close the cursor."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor with nothing open in the driver between statements: each `execute` is one
    trip that leaves its rows and counts here."""

    __slots__ = ("_arraysize", "_outcome")
    _awaitable_cursor_close = False  # the driver's cursor is closed in the same trip

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._arraysize = 1
        self._outcome: _Outcome = (None, -1, None, [])

    @property
    def description(self) -> Any:
        return self._outcome[0]

    @property
    def rowcount(self) -> int:
        return self._outcome[1]

    @property
    def lastrowid(self) -> Any:
        return self._outcome[2]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run(operation, parameters, many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        try:
            return await_(self._run(operation, seq_of_parameters, many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _run(self, operation: Any, parameters: Any, many: bool) -> _Cursor:
        connection = self._connection
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await connection._execute(
                _statement, connection, operation, parameters, many
            )
        self._outcome = outcome
        self._rows = collections.deque(outcome[3])
        return self


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _Cursor  # type: ignore[assignment]

    def rollback(self) -> None:
        """Roll back, unless no transaction is open: the pool rolls back every connection
        it is given back, after each commit too, and that was one more trip a transaction
        for nothing. (``in_transaction`` reads a flag of the sqlite3 connection, which no
        statement is running on here: SQLAlchemy gives a connection one user at a time.)"""
        raw = self._connection._connection
        if raw is not None and not raw.in_transaction:
            return
        super().rollback()


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        adapted = super().connect(*arg, **kw)
        return _Connection(self, adapted._connection)


class _Inline:
    """What SQLAlchemy's adapter and aiosqlite's cursor use of an ``aiosqlite.Connection``,
    over a sqlite3 connection called directly on the event loop's thread."""

    __slots__ = ("_connection",)
    _iter_chunk_size = 64  # rows an aiosqlite cursor fetches at a time when iterated

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def cursor(self) -> aiosqlite.Cursor:
        """A server-side cursor (``stream()``): aiosqlite's, whose calls come back here."""
        return aiosqlite.Cursor(self, self._conn.cursor())  # type: ignore[arg-type]

    async def commit(self) -> None:
        await self._execute(self._conn.commit)

    async def rollback(self) -> None:
        await self._execute(self._conn.rollback)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes


class _InlineConnection(_Connection):
    __slots__ = ()

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level  # type: ignore[no-any-return]

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._connection._conn.isolation_level = value


class _InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _InlineConnection:
        kw.pop("async_creator_fn", None)
        # used by one task at a time (SQLAlchemy's pool), but closed wherever the pool is
        kw.setdefault("check_same_thread", False)
        connection = sqlite3.connect(*arg, **kw)
        return _InlineConnection(self, _Inline(connection))  # type: ignore[arg-type]


DBAPI = _DBAPI(aiosqlite, sqlite3)
INLINE = _InlineDBAPI(aiosqlite, sqlite3)


def private_file(database: str | None) -> None:
    """Create the SQLite file readable by its owner only (mode 0600), or narrow an existing
    one to that, before SQLite opens it; SQLite creates it 0644 (less the umask), and its
    -wal, -shm and -journal files copy the database file's mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    if not os.path.isdir(os.path.dirname(os.path.abspath(database))):
        return  # SQLite says what is wrong when it cannot open the file
    fd = os.open(database, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
