"""Writes of many rows at once, for the scheduler's stages: Core statements, no ORM objects.

A tick plans and starts hundreds of check-ins; written one ORM object at a time that is
thousands of statements and most of the worker's CPU. These helpers take plain dicts of
column values and send one statement per call. SQLAlchemy's "insertmanyvalues" turns an
INSERT given a list into multi-row ``INSERT ... VALUES (...), (...)`` statements (split
only past the driver's parameter limit), and an UPDATE given a list is one prepared
statement executed for every row.

Column types still apply (encryption, JSON, aware timestamps); ORM flush events do not,
so a caller inserting patients or clinicians sets their lookup hashes itself, and a
caller updating a check-in bumps its ``version`` (``update_by_id`` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def table_of(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


async def insert_new(
    session: AsyncSession,
    model: type[SQLModel],
    rows: Sequence[Mapping[str, Any]],
    unique: Sequence[str],
    returning: Sequence[str] = ("id",),
) -> list[Row[Any]]:
    """Insert `rows`, skipping any whose `unique` columns exist; the inserted rows'
    `returning` columns (in no particular order: match them by a unique column)."""
    if not rows:
        return []
    table = table_of(model)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    statement = insert.on_conflict_do_nothing(index_elements=list(unique)).returning(
        *(table.c[name] for name in returning)
    )
    connection = await session.connection()
    result = await connection.execute(statement, list(rows))
    return list(result.all())


async def update_by_id(
    session: AsyncSession, model: type[SQLModel], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Set columns of many rows by id: each dict holds ``id`` and the same other columns.

    Rows given the same values (a wave's check-ins all start alike) share one ``UPDATE ...
    WHERE id IN (...)``; the rest are one statement executed for each. A table with a
    ``version`` column (the check-in's optimistic lock) has it bumped."""
    if not rows:
        return
    table = table_of(model)
    names = [name for name in rows[0] if name != "id"]
    bump = {"version": table.c.version + 1} if "version" in table.c else {}
    alike: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        alike.setdefault(_fingerprint(row, names), []).append(row)
    connection = await session.connection()
    apart = [group[0] for group in alike.values() if len(group) == 1]
    for group in alike.values():
        if len(group) > 1:
            values = {name: group[0][name] for name in names} | bump
            ids = [row["id"] for row in group]
            await connection.execute(update(table).where(table.c.id.in_(ids)).values(values))
    if apart:
        each: dict[str, Any] = {name: bindparam(f"new_{name}") for name in names} | bump
        statement = update(table).where(table.c.id == bindparam("row_id")).values(each)
        params = [{"row_id": row["id"], **{f"new_{n}": row[n] for n in names}} for row in apart]
        await connection.execute(statement, params)


def _fingerprint(row: Mapping[str, Any], names: Sequence[str]) -> str:
    """The row's new values as text, equal for rows given equal values."""
    return json.dumps([row[name] for name in names], sort_keys=True, default=str)
