"""A step's writes: the check-in's new state (`save_step`), and the usual turn's three
writes at once (`write_step`).

Most turns write three rows' worth: the check-in's step, the answer to one item, and the
reply's outbox rows. On SQLite each is its own statement (in the process: a statement
costs no round trip). On PostgreSQL `write_step` sends them as one statement, three
data-modifying CTEs, because there every statement is a round trip and the round trips
were the largest single share of a turn's CPU (docs/PERFORMANCE.md, issue 21, tenth pass).
The one statement writes what the three would, with the same checks: the step guarded by
the check-in's version (a stale copy raises ``StaleDataError``), the answer skipped if
the item has a current one, the outbox rows skipped on a known idempotency key and
leased to a hand-off as `Repository.enqueue` leases them. The three parts see the
database as it was before the statement, as the separate statements did each other's
tables (none reads what another writes). tests/storage/test_step_writes.py runs turns
both ways and compares every row.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    Select,
    Table,
    Update,
    bindparam,
    func,
    literal,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage import outbox, prebuilt
from bot.storage.answer_tables import CURRENT, Answer, NewAnswer
from bot.storage.queued import NewOutbound
from bot.storage.repository import Repository
from bot.storage.tables import Checkin

_CHECKIN: Table = Checkin.__table__  # type: ignore[attr-defined]
_ANSWER: Table = Answer.__table__  # type: ignore[attr-defined]
_OUTBOX = prebuilt.OUTBOX_TABLE
ONE_STATEMENT = True  # PostgreSQL writes a step at once (False: as SQLite does; tests)


@functools.lru_cache(maxsize=64)
def _step_update(columns: tuple[str, ...]) -> Update:
    """`save_step`'s UPDATE of `columns` (each the parameter ``b_<column>``), built once
    per set of columns: a step changes the same few (the state; at times the status,
    the reminder, the times), and building the statement and its cache key on every step
    cost about as much as running it (bot/storage/prebuilt.py)."""
    values: dict[str, Any] = {c: bindparam(f"b_{c}") for c in columns}
    values["version"] = bindparam("b_version")
    return (
        update(_CHECKIN)
        .where(_CHECKIN.c.id == bindparam("b_id"), _CHECKIN.c.version == bindparam("b_seen"))
        .values(values)
    )


async def save_step(
    session: AsyncSession, checkin: Checkin, connection: AsyncConnection | None = None
) -> None:
    """Write what a step changed on a check-in loaded in this session: one UPDATE of the
    changed columns, guarded by its version counter as the ORM's flush is
    (``WHERE version = :seen``, bumped; a stale copy raises ``StaleDataError``), without
    the ORM's unit of work (about a twentieth of a turn's CPU went to flushing this one
    row). The object is left as if flushed: its new values are its committed ones. A
    check-in not yet in the database is flushed as usual."""
    if not sa_inspect(checkin).persistent:
        session.add(checkin)
        await session.flush()
        return
    changed = _changes(checkin)
    if not changed:
        return
    if connection is None:  # (else the caller's, the same)
        connection = await session.connection()
    result = await connection.execute(
        _step_update(tuple(sorted(changed))), _step_params(checkin, changed)
    )
    _stepped(session, checkin, changed, result.rowcount)


def _changes(checkin: Checkin) -> dict[str, Any]:
    """The columns a step set to a new value since the check-in was loaded, and their
    values: only attributes set since the load can have changed (`committed_state` holds
    their values before); asking all twenty-three for their history cost more."""
    state = sa_inspect(checkin)
    attrs = state.attrs
    return {k: attrs[k].value for k in state.committed_state if attrs[k].history.has_changes()}


def _step_params(checkin: Checkin, changed: dict[str, Any]) -> dict[str, Any]:
    seen = checkin.version
    params = {f"b_{k}": v for k, v in changed.items()}
    return params | {"b_id": checkin.id, "b_seen": seen, "b_version": seen + 1}


def _stepped(session: AsyncSession, checkin: Checkin, changed: dict[str, Any], rows: int) -> None:
    """After the step's UPDATE touched `rows` rows: refused unless exactly the one, else
    the object made as if flushed."""
    if rows != 1:
        raise StaleDataError(f"check-in {checkin.id}: changed by another transaction")
    for key, value in changed.items():
        set_committed_value(checkin, key, value)
    set_committed_value(checkin, "version", checkin.version + 1)
    # and no longer marked modified: left so, the session would flush it before its next
    # statement and at the commit, walking the unit of work to find nothing to write
    # (about a twentieth of a console turn's function calls); this is what the flush
    # itself does with a row it wrote
    state = sa_inspect(checkin)
    state._commit_all(state.dict, session.sync_session.identity_map)


async def write_step(
    repo: Repository, checkin: Checkin, answer: NewAnswer | None, rows: Sequence[NewOutbound]
) -> bool:
    """Write a step of a check-in loaded in this transaction, the answer it recorded (if
    any) and the messages it queued, as `save_step`, `Repository.save_answer` and
    `Repository.enqueue` would in that order; on PostgreSQL as one statement. False when
    the answer was not stored (the item has a current answer already)."""
    persistent = sa_inspect(checkin).persistent
    if repo.dialect != "postgresql" or not ONE_STATEMENT or not persistent:
        await save_step(repo.session, checkin, await repo.connection())
        stored = await repo.save_answer(answer) if answer is not None else True
        await repo.enqueue(rows)
        return stored
    changed = _changes(checkin)
    if not changed and answer is None and not rows:
        return True  # (nothing to write: no statement)
    params: dict[str, Any] = _step_params(checkin, changed) if changed else {}
    answer_keys: tuple[str, ...] = ()
    if answer is not None:
        answer_values = answer.values()
        answer_keys = tuple(answer_values)
        params |= {f"a_{k}": v for k, v in answer_values.items()}
    values, claiming = repo.outbox_values(rows) if rows else ([], None)
    for n, row in enumerate(values):
        params |= {f"o{n}_{k}": v for k, v in row.items()}
    statement = _one_statement(
        tuple(sorted(changed)),
        answer_keys,
        tuple(k for k in values[0] if k in _OUTBOX.c) if values else (),
        len(values),
        claiming is not None,
    )
    found = (await (await repo.connection()).execute(statement, params)).all()
    first = found[0]._mapping
    if changed:
        _stepped(repo.session, checkin, changed, first["stepped"])
    if values:
        repo.enqueued([tuple(r)[-3:] for r in found if r.queued_id is not None], rows, claiming)
    return answer is None or first["answer_id"] is not None


@functools.lru_cache(maxsize=128)
def _one_statement(
    step: tuple[str, ...],
    answer: tuple[str, ...],
    message: tuple[str, ...],
    messages: int,
    leasing: bool,
) -> Select[Any]:
    """The one statement of `write_step`: the check-in's UPDATE of the columns `step`
    (none: no step), the answer's INSERT of the columns `answer` (none: no answer), the
    outbox INSERT of `messages` rows of the columns `message`, leased if `leasing`.
    Its one row, or one for each message queued: how many check-ins the step changed
    (``stepped``), the answer's id (``answer_id``, NULL if skipped), and each queued
    message's id, status and key. Built once per shape (parameters: ``b_`` the step's,
    ``a_`` the answer's, ``o<n>_`` the n-th message's)."""
    columns: list[Any] = []
    if step:
        stepped = _step_update(step).returning(_CHECKIN.c.id).cte("stepped")
        columns.append(select(func.count()).select_from(stepped).scalar_subquery().label("stepped"))
    if answer:
        answered = (
            postgresql.insert(_ANSWER)
            .values({c: _param(_ANSWER, "a_", c) for c in answer})
            .on_conflict_do_nothing(index_elements=("checkin_id", "item_key"), index_where=CURRENT)
            .returning(_ANSWER.c.id)
            .cte("answered")
        )
        columns.append(select(answered.c.id).scalar_subquery().label("answer_id"))
    if not messages:
        return select(*columns)
    queued = (
        postgresql.insert(_OUTBOX)
        .from_select(list(message), _message_rows(message, messages, leasing))
        .on_conflict_do_nothing(index_elements=("idempotency_key",))
        .returning(_OUTBOX.c.id, _OUTBOX.c.status, _OUTBOX.c.idempotency_key)
        .cte("queued")
    )
    one = select(literal(1).label("one")).subquery("one")  # a row even if none is queued
    return select(
        *columns,
        queued.c.id.label("queued_id"),
        queued.c.status,
        queued.c.idempotency_key,
    ).select_from(one.outerjoin(queued, true()))


def _message_rows(columns: tuple[str, ...], messages: int, leasing: bool) -> Select[Any]:
    """The outbox rows to insert, as a SELECT of one row per message, in order: a
    many-row VALUES cannot be cached (SQLAlchemy compiles it anew on every run, some
    5 ms), and PostgreSQL numbers the rows of an INSERT from an ordered SELECT in that
    order (as SQLAlchemy's own "insertmanyvalues" relies on). Each column is its
    parameter ``o<n>_<column>``; if `leasing`, the lease's columns are set as
    `Repository.enqueue` sets them (`outbox.leasing`)."""
    rows = []
    for n in range(messages):
        values: dict[str, Any] = {c: _param(_OUTBOX, f"o{n}_", c) for c in columns}
        if leasing:
            values |= outbox.leasing(f"o{n}_")
        rows.append(select(*(values[c].label(c) for c in columns), literal(n).label("n")))
    each = union_all(*rows).subquery("message") if messages > 1 else rows[0].subquery("message")
    return select(*(each.c[c] for c in columns)).order_by(each.c.n)


def _param(table: Table, prefix: str, column: str) -> BindParameter[Any]:
    """The parameter of `column`'s value, of the column's type: only the first row of a
    many-row VALUES takes it from the column by itself, and without it a value would be
    stored unconverted (an encrypted column's in clear)."""
    return bindparam(f"{prefix}{column}", type_=table.c[column].type)
