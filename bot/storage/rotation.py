"""Key rotation: re-encrypt every encrypted value under the ring's current key, in batches.

Resumable by construction: a value's key id is in its first characters, so the rows still
to do are those whose encrypted columns do not start with the current key's prefix. Each
batch commits on its own; a crash loses at most one batch, and running again finishes the
rest. Old keys stay in the ring until nothing uses them, so every row reads throughout.

Rows are updated only if unchanged since they were read (every encrypted column compared
with the ciphertext read), so a service writing at the same time is never overwritten; a
row it rewrote under an older key is picked up by the next pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, column, func, or_, select, table, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

import bot.storage.tables  # puts every table on SQLModel.metadata
from bot.storage.crypto import PREFIX, EncryptedText, KeyRing
from bot.storage.database import Database

BATCH = 500
MAX_PASSES = 10
Progress = Callable[[str, int, int], None]  # table, rows done so far, rows to do in all


@dataclass(frozen=True)
class Encrypted:
    """One table's encrypted columns and the lookup hash kept beside one of them."""

    name: str
    columns: tuple[str, ...]
    hashed: tuple[str, str] | None  # (plaintext column, hash column)

    def label(self, name: str) -> str:
        return f"{self.name}.{name}"


def encrypted_tables() -> list[Encrypted]:
    """Every table with an ``EncryptedText`` column, from the table definitions."""
    hashed = {t.__tablename__: pair for t, pair in bot.storage.tables.LOOKUP_HASHES.items()}
    found = []
    for sql_table in SQLModel.metadata.sorted_tables:
        names = tuple(c.name for c in sql_table.columns if isinstance(c.type, EncryptedText))
        if names:
            found.append(Encrypted(sql_table.name, names, hashed.get(sql_table.name)))
    return found


@dataclass
class Report:
    rotated: dict[str, int] = field(default_factory=dict)  # table: rows re-encrypted
    remaining: int = 0  # rows still under an older key (only after MAX_PASSES passes)


async def rotate(
    db: Database, ring: KeyRing, batch: int = BATCH, progress: Progress | None = None
) -> Report:
    """Re-encrypt, and re-hash, every row not yet under `ring`'s current key."""
    report = Report()
    for _ in range(MAX_PASSES):
        done_this_pass = 0
        for spec in encrypted_tables():
            done = await _rotate_table(db, ring, spec, batch, progress)
            report.rotated[spec.name] = report.rotated.get(spec.name, 0) + done
            done_this_pass += done
        report.remaining = await _count_stale(db, ring)
        if report.remaining == 0 or done_this_pass == 0:
            break
    return report


async def _rotate_table(
    db: Database, ring: KeyRing, spec: Encrypted, batch: int, progress: Progress | None
) -> int:
    sql, stale = _stale(spec, ring.prefix)
    async with db.engine.connect() as connection:
        total = (await connection.execute(select(func.count()).where(stale))).scalar_one()
    done, after = 0, 0
    while done < total:
        async with db.engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(sql.c.id, *(sql.c[n] for n in spec.columns))
                    .where(stale, sql.c.id > after)
                    .order_by(sql.c.id)
                    .limit(batch)
                )
            ).all()
            if not rows:
                break
            for row in rows:
                done += await _rewrite(connection, ring, spec, sql, row)
            after = rows[-1].id
        if progress is not None:
            progress(spec.name, done, total)
    return done


async def _rewrite(
    connection: AsyncConnection, ring: KeyRing, spec: Encrypted, sql: Any, row: Any
) -> int:
    """Re-encrypt one row if nobody changed it since it was read; 1 if it was rewritten."""
    old = {name: getattr(row, name) for name in spec.columns}
    plain = {n: ring.decrypt(spec.label(n), v) for n, v in old.items() if v is not None}
    values: dict[str, Any] = {n: ring.encrypt(spec.label(n), v) for n, v in plain.items()}
    if spec.hashed is not None:
        source, hashed = spec.hashed
        values[hashed] = ring.lookup_hash(plain[source]) if source in plain else None
    unchanged = [sql.c[n] == v if v is not None else sql.c[n].is_(None) for n, v in old.items()]
    result = await connection.execute(
        update(sql).where(sql.c.id == row.id, *unchanged).values(**values)
    )
    return int(result.rowcount or 0)


def _stale(spec: Encrypted, prefix: str) -> tuple[Any, ColumnElement[bool]]:
    """The table (plain text columns, no decryption) and: some value not under `prefix`."""
    names = [*spec.columns, *(spec.hashed[1:] if spec.hashed else ())]
    sql = table(spec.name, column("id"), *(column(n) for n in names))
    stale = or_(
        *(
            and_(sql.c[n].is_not(None), ~sql.c[n].startswith(prefix, autoescape=True))
            for n in spec.columns
        )
    )
    return sql, stale


async def _count_stale(db: Database, ring: KeyRing) -> int:
    total = 0
    async with db.engine.connect() as connection:
        for spec in encrypted_tables():
            _, stale = _stale(spec, ring.prefix)
            total += (await connection.execute(select(func.count()).where(stale))).scalar_one()
    return total


async def key_usage(db: Database, key_ids: Sequence[str]) -> dict[str, int]:
    """How many stored values each key id encrypts, plus ``"other"``: values under a key not
    listed, or not encrypted at all. Tables the schema does not have yet are skipped."""
    usage = dict.fromkeys([*key_ids, "other"], 0)
    async with db.engine.connect() as connection:
        present = set(await connection.run_sync(lambda c: sa_inspect(c).get_table_names()))
        for spec in encrypted_tables():
            if spec.name not in present:
                continue
            sql = table(spec.name, *(column(n) for n in spec.columns))
            for name in spec.columns:
                cell = sql.c[name]
                counts = [
                    func.count().filter(cell.startswith(f"{PREFIX}:{k}:", autoescape=True))
                    for k in key_ids
                ]
                row = (await connection.execute(select(func.count(cell), *counts))).one()
                for key_id, count in zip(key_ids, row[1:], strict=True):
                    usage[key_id] += count
                usage["other"] += row[0] - sum(row[1:])
    return usage


async def encrypted_data_exists(db: Database) -> bool:
    """Whether any stored value is encrypted (under any key)."""
    async with db.engine.connect() as connection:
        present = set(await connection.run_sync(lambda c: sa_inspect(c).get_table_names()))
        for spec in encrypted_tables():
            if spec.name not in present:
                continue
            sql = table(spec.name, *(column(n) for n in spec.columns))
            sealed = or_(
                *(sql.c[n].startswith(f"{PREFIX}:", autoescape=True) for n in spec.columns)
            )
            if (
                await connection.execute(select(sql.c[spec.columns[0]]).where(sealed).limit(1))
            ).first():
                return True
    return False


async def compact_sqlite(db: Database) -> None:
    """SQLite: fold the WAL into the file and rebuild it, so that values rewritten in place
    (plaintext before the encrypting migration, ciphertext under a retired key) leave no
    copy in free pages or in the WAL. No-op on PostgreSQL (see docs/PRIVACY.md)."""
    if db.dialect != "sqlite":
        return
    async with db.maintenance() as driver:
        for statement in (
            "PRAGMA wal_checkpoint(TRUNCATE)",
            "VACUUM",
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ):
            cursor = await driver.execute(statement)
            await cursor.fetchall()
            await cursor.close()
