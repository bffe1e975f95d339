"""Database fixtures: storage tests run on a real SQLite file and on a real PostgreSQL.
Also ``stand_in``: the Telegram Bot API stand-in, served over real HTTP from a thread.

``db_url`` (empty) and ``db`` (migrated, no rows) are parametrized over both through
``dialect``; the PostgreSQL variant carries the ``postgres`` marker (deselect it with
``-m "not postgres"``). ``sqlite_db`` and ``pg_db`` are for one-dialect tests.

* SQLite: every test gets its own file under ``tmp_path``, copied from a file migrated
  once per session.
* PostgreSQL: databases are created with unique names through the server's ``test``
  database and dropped afterwards: one per test for ``db_url`` (migration tests), one
  per test module for ``db`` / ``pg_db``, emptied (TRUNCATE) before each test. The server
  is ``CHECKIN_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).

If that server cannot be reached, PostgreSQL tests fail (at setup) with a message saying
so; ``CHECKIN_SKIP_POSTGRES=1`` turns that failure into a skip. A reachable server is
always used.
"""

import asyncio
import logging
import os
import re

# python-telegram-bot 22 warns (an error under our warning filter) unless durations are
# timedeltas; the service sets this in bootstrap, the tests set it for every test.
os.environ.setdefault("PTB_TIMEDELTA", "true")
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import bot.storage.tables  # noqa: F401  (puts every table on SQLModel.metadata)
from bot.storage.crypto import ENV_KEY, KeyRing, new_key, parse_keys, use_keys
from bot.storage.database import Database
from bot.storage.migrate import upgrade_async
from tests.standins.server import serve_in_thread
from tests.standins.telegram import TelegramStandIn

# Names, numbers and messages are encrypted at rest: every test process (and the `checkin`
# processes tests start, which inherit the environment) uses one key made for this run.
os.environ.setdefault(ENV_KEY, new_key().line)
TEST_RING = KeyRing(parse_keys(os.environ[ENV_KEY], ENV_KEY))
use_keys(TEST_RING)

POSTGRES_ADMIN_URL = os.environ.get(
    "CHECKIN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
T = TypeVar("T")


def _run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on its own loop in a worker thread, away from the test's loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _admin(sql: str) -> None:
    dsn = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(autouse=True)
def _test_keys() -> Iterator[None]:
    """Every test starts (and leaves the next test) with the run's key ring installed."""
    use_keys(TEST_RING)
    yield
    use_keys(TEST_RING)


@pytest.fixture(scope="session")
def postgres_server() -> str | None:
    """None if the PostgreSQL server answers, else why it does not (checked once)."""
    try:
        _run_apart(_admin("SELECT 1"))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _require(postgres_server: str | None) -> None:
    """Fail (or, with CHECKIN_SKIP_POSTGRES=1, skip) when the server is unreachable."""
    if postgres_server is None:
        return
    message = (
        f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable ({postgres_server}). "
        "Start it, or set CHECKIN_SKIP_POSTGRES=1 to skip the PostgreSQL tests."
    )
    if os.environ.get("CHECKIN_SKIP_POSTGRES") == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def _new_database() -> Iterator[str]:
    """Create a uniquely named database, then drop it."""
    name = f"checkin_test_{uuid.uuid4().hex[:16]}"
    _run_apart(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        _run_apart(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _postgres_url(name: str) -> str:
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(postgres_server: str | None) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    _require(postgres_server)
    for name in _new_database():
        yield _postgres_url(name)


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server: str | None) -> Iterator[str]:
    """A PostgreSQL database at the newest schema, shared by one test module."""
    _require(postgres_server)
    for name in _new_database():
        url = _postgres_url(name)
        _run_apart(upgrade_async(url))
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a new, empty SQLite file in the test's temporary directory."""
    return f"sqlite+aiosqlite:///{tmp_path / 'checkin.db'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session, which migrated test databases copy."""
    path = tmp_path_factory.mktemp("template") / "checkin.db"
    _run_apart(upgrade_async(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def migrated_sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """The URL of a SQLite file at the newest schema, private to the test."""
    path = tmp_path / "checkin.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def dialect(request: pytest.FixtureRequest) -> str:
    """Which database a parametrized storage test runs on."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(dialect: str, request: pytest.FixtureRequest) -> str:
    """An empty database URL, once for SQLite and once for PostgreSQL."""
    url: str = request.getfixturevalue("sqlite_url" if dialect == "sqlite" else "postgres_url")
    return url


async def _opened(url: str) -> AsyncIterator[Database]:
    database = Database(url)
    try:
        if database.dialect == "postgresql":
            await _empty_tables(database)
        yield database
    finally:
        await database.dispose()


async def _empty_tables(database: Database) -> None:
    """Remove every row a previous test of the module left (PostgreSQL databases are shared)."""
    tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    async with database.engine.begin() as connection:
        await connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
async def db(dialect: str, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """A database at the newest schema and without rows, on each dialect; disposed after."""
    fixture = "migrated_sqlite_url" if dialect == "sqlite" else "postgres_module_url"
    url: str = request.getfixturevalue(fixture)
    async for database in _opened(url):
        yield database


@pytest.fixture
async def pg_db(postgres_module_url: str) -> AsyncIterator[Database]:
    """A PostgreSQL database at the newest schema (for PostgreSQL-only behaviour)."""
    async for database in _opened(postgres_module_url):
        yield database


@pytest.fixture
async def second_worker(pg_db: Database) -> AsyncIterator[Database]:
    """Another process's connection pools on `pg_db`'s database (a second worker)."""
    other = Database(pg_db.url)
    try:
        yield other
    finally:
        await other.dispose()


@pytest.fixture
async def sqlite_db(migrated_sqlite_url: str) -> AsyncIterator[Database]:
    """A SQLite database at the newest schema (for SQLite-only behaviour)."""
    async for database in _opened(migrated_sqlite_url):
        yield database


# ---- the Telegram stand-in ---------------------------------------------------------------


@pytest.fixture
def stand_in() -> Iterator[tuple[TelegramStandIn, str]]:
    """A Bot API stand-in served from a thread with its own event loop, so both a
    synchronous test (a `checkin` process it started talks to it) and an async one (its
    own loop free) can use it: (the stand-in, its base URL; the Bot API is under ``/bot``)."""
    fake = TelegramStandIn()
    with serve_in_thread(fake.app) as url:
        yield fake, url


# ---- no identifiers in logs -------------------------------------------------------------

# Names, addresses, numbers, chat ids and answer texts the tests use (fixtures and their own
# canaries), plus item wording. Short names only as whole words, case-sensitive.
LOG_CANARY_WORDS = (
    "Ada", "Pat", "P-017", "P-1", "P-2", "Dr. Rao", "Dr. Backup", "Dr A", "Dr B",
    "Hester Prynne", "Zebedee Quillfeather", "pat-1", "dr-r", "dr-b", "zq-console-4471",
    "5501", "5502", "7301",
)  # fmt: skip
LOG_CANARY_TEXTS = (
    "+447700900001", "+15555550123", "+15555550199", "+12125550123", "(212) 555-0123",
    "Quillfeather-canary", "not difficult at all", "is Pat there",
    "better off dead", "Little interest or pleasure", "Feeling bad about yourself",
)  # fmt: skip
_CANARY = re.compile(
    "|".join(
        [rf"(?<![\w-]){re.escape(w)}(?![\w-])" for w in LOG_CANARY_WORDS]
        + [re.escape(t) for t in LOG_CANARY_TEXTS]
    )
)


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _leak(record: logging.LogRecord) -> str | None:
    """The canary in the record's message, arguments or exception, if any."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        message = str(record.msg)
    texts = [message, repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append(str(record.exc_info[1]))
    found = _CANARY.search("\n".join(texts))
    return found.group(0) if found else None


@pytest.fixture(autouse=True)
def no_identifiers_in_logs() -> Iterator[None]:
    """Fail any test during which a log record (ours at DEBUG, libraries' at INFO) carries
    a known name, address, number, chat id, answer or item wording."""
    recorder = _Recorder()
    root, ours = logging.getLogger(), [logging.getLogger(n) for n in ("bot", "scheduler")]
    levels = root.level, [logger.level for logger in ours]
    root.addHandler(recorder)
    root.setLevel(min(root.level, logging.INFO))
    for logger in ours:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(recorder)
        root.setLevel(levels[0])
        for logger, level in zip(ours, levels[1], strict=True):
            logger.setLevel(level)
    leaks = [(r.name, r.levelname, found) for r in recorder.records if (found := _leak(r))]
    if leaks:
        pytest.fail(f"identifiers in log records (logger, level, canary): {leaks}", pytrace=False)
