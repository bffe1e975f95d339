"""The SQLite database and every file SQLite keeps beside it are readable by their owner only,
and the README names the key file the code creates."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

from sqlalchemy import text

from bot.storage.database import Database
from bot.storage.keys import default_key_file
from bot.storage.migrate import upgrade_async

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_database_its_wal_and_shm_are_created_0600(tmp_path: Path) -> None:
    """Under a permissive umask, `db upgrade` and a write leave the file, -wal and -shm 0600."""
    path = tmp_path / "checkin.db"
    url = f"sqlite+aiosqlite:///{path}"
    old = os.umask(0o022)
    try:
        await upgrade_async(url)
        async with Database(url) as db, db.engine.begin() as connection:
            await connection.execute(text("CREATE TABLE scratch (x TEXT)"))
            names = {p.name: mode(p) for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert {"checkin.db", "checkin.db-wal", "checkin.db-shm"} <= set(names)
    assert {name: 0o600 for name in names} == names


async def test_an_existing_world_readable_database_is_narrowed_and_its_journal_follows(
    tmp_path: Path,
) -> None:
    """A database file made 0644 before this release is narrowed to 0600 when opened, and a
    rollback journal SQLite writes beside it takes the same mode."""
    path = tmp_path / "checkin.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    Database(f"sqlite:///{path}")
    assert mode(path) == 0o600
    plain = sqlite3.connect(path, isolation_level=None)
    try:
        plain.execute("PRAGMA journal_mode = DELETE")
        plain.execute("CREATE TABLE t (x TEXT)")
        plain.execute("BEGIN IMMEDIATE")
        plain.execute("INSERT INTO t VALUES ('a')")
        plain.execute("UPDATE t SET x = 'b'")
        journal = path.with_name(path.name + "-journal")
        assert journal.exists() and mode(journal) == 0o600
        plain.execute("COMMIT")
    finally:
        plain.close()


def test_the_readme_names_the_key_file_the_code_creates() -> None:
    """README's `db upgrade` line names the key file `default_key_file` puts beside checkin.db."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (line,) = [x for x in readme.splitlines() if x.startswith("$ checkin db upgrade")]
    named = re.findall(r"checkin\.[a-z.]*key", line)
    key_file = default_key_file("sqlite:///checkin.db")
    assert key_file is not None and named == [key_file.name]
