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

On PostgreSQL the rows travel as one array per column instead (``INSERT ... SELECT FROM
unnest($1::integer[], $2::text[], ...)``, and ``UPDATE ... FROM unnest(...)``): each value
still goes through its column type's own bind processing, once, but SQLAlchemy no longer
renders and processes a parameter set per row, which was half the CPU of a wave's
planning and starting (``construct_params`` and insertmanyvalues' batching, about 20 us a
row and column). The statement text depends only on the table and the column names, so
asyncpg prepares it once per connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ARRAY, Column, Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Row
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def among(dialect: str, column: Any, values: Sequence[Any]) -> Any:
    """``column IN values``; on PostgreSQL ``column = ANY(<one array parameter>)``, which
    SQLAlchemy neither renders nor binds a value at a time (for 250 ids, 250 rendered
    and cast placeholders: about 2 ms a statement)."""
    if dialect != "postgresql":
        return column.in_(values)
    return column == sa.any_(sa.bindparam(None, list(values), ARRAY(column.type)))


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
    connection = await session.connection()
    if connection.dialect.name == "postgresql" and _uniform(rows):
        rows = _with_defaults(table, rows, "default")
        d, names = connection.dialect, list(rows[0])
        # identifiers only, quoted by the dialect; every value is a parameter
        sql = (
            f"INSERT INTO {_table(d, table)} ({_names(d, names)}) "  # noqa: S608
            f"SELECT * FROM {_unnest(d, table, names)} "
            f"ON CONFLICT ({_names(d, unique)}) DO NOTHING RETURNING {_names(d, returning)}"
        )
        result = await connection.exec_driver_sql(sql, _arrays(d, table, names, rows))
        return list(result.all())
    dialect = connection.dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    statement = insert.on_conflict_do_nothing(index_elements=list(unique)).returning(
        *(table.c[name] for name in returning)
    )
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
    postgres = connection.dialect.name == "postgresql"
    apart = [group[0] for group in alike.values() if len(group) == 1]
    for group in alike.values():
        if len(group) > 1:
            values = {name: group[0][name] for name in names} | bump
            ids = [row["id"] for row in group]
            where = among(connection.dialect.name, table.c.id, ids)
            await connection.execute(update(table).where(where).values(values))
    if apart and postgres:
        filled = _with_defaults(table, apart, "onupdate")
        names = [name for name in filled[0] if name != "id"]
        d, columns, name = connection.dialect, ["id", *names], _table(connection.dialect, table)
        sets = [f"{_quote(d, n)} = v.{_quote(d, n)}" for n in names]
        sets += [f"version = {name}.version + 1"] if bump else []
        # identifiers only, quoted by the dialect; every value is a parameter
        sql = (
            f"UPDATE {name} SET {', '.join(sets)} "  # noqa: S608
            f"FROM {_unnest(d, table, columns)} AS v({_names(d, columns)}) WHERE {name}.id = v.id"
        )
        await connection.exec_driver_sql(sql, _arrays(d, table, columns, filled))
    elif apart:
        each: dict[str, Any] = {name: bindparam(f"new_{name}") for name in names} | bump
        statement = update(table).where(table.c.id == bindparam("row_id")).values(each)
        params = [{"row_id": row["id"], **{f"new_{n}": row[n] for n in names}} for row in apart]
        await connection.execute(statement, params)


def _fingerprint(row: Mapping[str, Any], names: Sequence[str]) -> str:
    """The row's new values as text, equal for rows given equal values."""
    return json.dumps([row[name] for name in names], sort_keys=True, default=str)


def _uniform(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every row names the same columns (what one array per column needs)."""
    first = rows[0].keys()
    return all(row.keys() == first for row in rows)


def _with_defaults(
    table: Table, rows: Sequence[Mapping[str, Any]], kind: str
) -> Sequence[Mapping[str, Any]]:
    """`rows` with the Python-side ``default`` (or ``onupdate``) of each column they leave
    out, as SQLAlchemy's own statements would fill them: one call a row for a callable."""
    missing = [
        column for column in table.columns
        if column.name not in rows[0] and getattr(column, kind) is not None
        and not column.primary_key
    ]  # fmt: skip
    if not missing:
        return rows
    filled = []
    for row in rows:
        extra = {}
        for column in missing:
            default = getattr(column, kind)
            extra[column.name] = default.arg(None) if default.is_callable else default.arg
        filled.append({**row, **extra})
    return filled


def _table(dialect: Dialect, table: Table) -> str:
    return str(dialect.identifier_preparer.format_table(table))


def _quote(dialect: Dialect, name: str) -> str:
    return str(dialect.identifier_preparer.quote(name))


def _names(dialect: Dialect, names: Sequence[str]) -> str:
    return ", ".join(_quote(dialect, name) for name in names)


def _unnest(dialect: Dialect, table: Table, names: Sequence[str]) -> str:
    """``unnest($1::<type>[], ...)`` over the columns `names`, in that order."""
    casts = (f"${n}::{table.c[name].type.compile(dialect=dialect)}[]"
             for n, name in enumerate(names, 1))  # fmt: skip
    return f"unnest({', '.join(casts)})"


def _arrays(
    dialect: Dialect, table: Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> tuple[list[Any], ...]:
    """One list per column of `rows`, each value bound as its column's type binds it."""
    return tuple(_bound(dialect, table.c[name], [row[name] for row in rows]) for name in names)


def _bound(dialect: Dialect, column: Column[Any], values: list[Any]) -> list[Any]:
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return values if process is None else [process(value) for value in values]
