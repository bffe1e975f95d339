"""Delivery records outcomes in few transactions without weakening them: sends that finish
together share a commit, each returns only once its own row is committed, and a failed
commit fails every send that was waiting on it (their leases run out: sent again). On
PostgreSQL a commit with nothing to apply but the marks is one statement on the quick pool,
outside any transaction of ours (no BEGIN and COMMIT round trips)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from bot.app.outbox.edits import edit_targets
from bot.app.outbox.sending import Sent, _GroupCommit
from bot.storage.checkins import Asked
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from tests.statements import statements
from tests.test_services import rows

MESSAGES = 50


def _message(n: int, at: datetime) -> OutboundMessage:
    return OutboundMessage(
        channel="telegram", recipient_kind="patient", recipient_id=n, address=str(9000 + n),
        body=f"question {n}", payload={}, idempotency_key=f"commit-test:{n}", next_attempt_at=at,
    )  # fmt: skip


async def _queued_ids(db: Database, at: datetime) -> list[int]:
    async with db.transaction() as session:
        return await Repository(session).enqueue([_message(n, at) for n in range(MESSAGES)])


def _count_commits(db: Database) -> list[int]:
    commits = [0]

    @event.listens_for(db.engine.sync_engine, "commit")
    def _on_commit(_connection: Any) -> None:
        commits[0] += 1

    return commits


async def test_sends_finishing_together_share_a_commit(db: Database, now: datetime) -> None:
    """Fifty outcomes arriving at once: every row is marked sent with its own provider id
    and time, in at most three transactions rather than fifty (each one UPDATE; on
    PostgreSQL the statement is its own transaction, on the quick pool)."""
    ids = await _queued_ids(db, now)
    marks = _GroupCommit(db)
    commits = _count_commits(db)
    with statements(db, quick=True) as seen:  # SQLite: the main engine
        await asyncio.gather(
            *(marks.record([Sent(i, f"tg-{i}", now + timedelta(seconds=i))]) for i in ids)
        )
    updates = len([s for s in seen if s.startswith("UPDATE")])
    assert 1 <= updates <= 3
    assert commits[0] == (updates if db.dialect == "sqlite" else 0)
    stored = {m.id: m for m in await rows(db, OutboundMessage)}
    for i in ids:
        assert stored[i].status == "sent"
        assert stored[i].provider_id == f"tg-{i}"
        assert stored[i].sent_at == now + timedelta(seconds=i)


async def test_a_commits_outcomes_are_one_update_run_for_each(db: Database, now: datetime) -> None:
    """A line's three sends recorded together: one UPDATE statement given three sets of
    parameters (``executemany``), each row with its own provider id and time."""
    ids = (await _queued_ids(db, now))[:3]
    executions: list[tuple[str, bool, int]] = []

    def seen(_c: Any, _cursor: Any, statement: str, params: Any, _x: Any, many: bool) -> None:
        executions.append((statement.split()[0], many, len(params) if many else 1))

    engine = db.quick_engine.sync_engine  # SQLite: the main engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await _GroupCommit(db).record(
            [Sent(i, f"tg-{i}", now + timedelta(seconds=n), "telegram") for n, i in enumerate(ids)]
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [e for e in executions if e[0] == "UPDATE"] == [("UPDATE", True, 3)]
    stored = {m.id: m for m in await rows(db, OutboundMessage)}
    for n, i in enumerate(ids):
        assert (stored[i].status, stored[i].provider_id) == ("sent", f"tg-{i}")
        assert stored[i].sent_at == now + timedelta(seconds=n)


async def test_a_failed_commit_fails_every_send_waiting_on_it(
    sqlite_db: Database, now: datetime
) -> None:
    """The database refuses the update: no caller is told its message was recorded, and
    nothing is marked sent (the leases run out and the messages go again)."""
    ids = await _queued_ids(sqlite_db, now)
    async with sqlite_db.engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE TRIGGER refuse_sent BEFORE UPDATE ON outbound_message "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    marks = _GroupCommit(sqlite_db)
    outcomes = await asyncio.gather(
        *(marks.record([Sent(i, f"tg-{i}", now)]) for i in ids), return_exceptions=True
    )
    assert all(isinstance(outcome, Exception) for outcome in outcomes)
    assert {m.status for m in await rows(sqlite_db, OutboundMessage)} == {"queued"}


async def test_an_edit_finds_the_question_it_edits(db: Database, now: datetime) -> None:
    """The claim reads the provider's id of the last question about the same item sent to
    the same recipient, and only that question's (not another item's, not another chat's)."""

    def ask(n: int, item: str, recipient: int) -> OutboundMessage:
        row = _message(n, now)
        row.recipient_id = recipient
        row.payload = {"intent": "Ask", "item": item}
        return row

    async with db.transaction() as session:
        repo = Repository(session)
        asked = await repo.enqueue([ask(1, "phq9.1", 1), ask(2, "phq9.2", 1), ask(3, "phq9.1", 2)])
        for asked_id in asked:
            await repo.mark_sent(asked_id, f"tg-{asked_id}", now)
        edit = _message(4, now)
        edit.recipient_id = 1
        edit.payload = {"edit": True, "item": "phq9.1"}
        (queued_edit,) = await repo.enqueue([edit])
    async with db.transaction() as session:
        claimed = await Repository(session).claim_outbox(now, 10, timedelta(seconds=30))
        targets = await edit_targets(session, claimed)
    assert [row.id for row in claimed] == [queued_edit]
    assert targets == {queued_edit: f"tg-{asked[0]}"}
    # the last question sent, read with the patient by their turn: used when it is the
    # edit's (no statement); looked up as above when it is another item's or patient's
    known = {"intent": "Ask", "item": "phq9.1", "above": "Intro"}
    for n, (given, expected, lookups) in enumerate([
        (Asked(1, "tg-known", known), "tg-known", 0),
        (Asked(1, "tg-known", {**known, "item": "phq9.2"}), f"tg-{asked[0]}", 1),
        (Asked(2, "tg-known", known), f"tg-{asked[0]}", 1),
    ]):  # fmt: skip
        async with db.transaction() as session:  # (each claims the edit again: lease over)
            (copy,) = await Repository(session).claim_outbox(
                now + timedelta(minutes=1 + n), 10, timedelta(seconds=30)
            )
            with statements(db) as seen:
                assert await edit_targets(session, [copy], given) == {queued_edit: expected}
        assert len(seen) == lookups


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class HeldDatabase:
    """The database, each of whose transactions (and quick connections) begins only once
    the test allows it (`allow`); `waiting` counts those waiting to begin."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.dialect = db.dialect
        self._turns = asyncio.Semaphore(0)
        self.waiting = 0

    def allow(self) -> None:
        self._turns.release()

    async def _turn(self) -> None:
        self.waiting += 1
        try:
            await self._turns.acquire()
        finally:
            self.waiting -= 1

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        await self._turn()
        async with self._db.transaction() as session:
            yield session

    @contextlib.asynccontextmanager
    async def quick(self) -> AsyncIterator[Any]:
        await self._turn()
        async with self._db.quick() as connection:
            yield connection


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_a_caller_cancelled_while_queued_is_not_recorded_later(
    db: Database, now: datetime
) -> None:
    """A caller cancelled while it waits behind another's commit (the stop's grace ran
    out) is taken out of the queue, as if its own transaction were rolled back: the next
    caller's commit records only its own outcome."""
    first, cancelled, later = (await _queued_ids(db, now))[:3]
    held = HeldDatabase(db)
    marks = _GroupCommit(held)  # type: ignore[arg-type]
    committing = asyncio.create_task(marks.record([Sent(first, "tg-1", now)]))
    await _until(lambda: held.waiting == 1)
    queued = asyncio.create_task(marks.record([Sent(cancelled, "tg-2", now)]))
    await asyncio.sleep(0.01)  # queued behind the commit under way
    queued.cancel()
    held.allow()
    await committing
    with pytest.raises(asyncio.CancelledError):
        await queued
    held.allow()
    await marks.record([Sent(later, "tg-3", now)])
    status = {m.id: m.status for m in await rows(db, OutboundMessage)}
    assert [status[first], status[cancelled], status[later]] == ["sent", "queued", "sent"]


async def test_a_commit_cancelled_with_its_callers_leaves_no_unretrieved_failure(
    db: Database, now: datetime
) -> None:
    """A commit cancelled half way fails every outcome it took, including that of a
    caller already cancelled while it waited: asyncio reports no "exception was never
    retrieved", and nothing is recorded."""
    first, one, two = (await _queued_ids(db, now))[:3]
    held = HeldDatabase(db)
    marks = _GroupCommit(held)  # type: ignore[arg-type]
    unretrieved: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context["message"]))
    try:
        committing = asyncio.create_task(marks.record([Sent(first, "tg-1", now)]))
        await _until(lambda: held.waiting == 1)
        callers = [asyncio.create_task(marks.record([Sent(i, f"tg-{i}", now)])) for i in (one, two)]
        await asyncio.sleep(0.01)  # both queued behind the commit under way
        held.allow()
        await committing
        await _until(lambda: held.waiting == 1)  # the next commit took both outcomes
        callers[1].cancel()  # it waits behind the commit of the first, which has its outcome
        callers[0].cancel()  # ... and that commit is cancelled
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
        del callers, outcomes, committing
        gc.collect()
        await asyncio.sleep(0)
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert unretrieved == []
    status = {m.id: m.status for m in await rows(db, OutboundMessage)}
    assert [status[first], status[one], status[two]] == ["sent", "queued", "queued"]


async def test_on_postgresql_marks_are_one_statement_outside_any_transaction(
    pg_db: Database, now: datetime
) -> None:
    """A line's Telegram sends recorded together on PostgreSQL: one UPDATE on the quick
    pool, its own transaction; nothing on the main engine (no BEGIN, no COMMIT: two round
    trips fewer). Each row is sent with its own provider id."""
    ids = (await _queued_ids(pg_db, now))[:5]
    main_transactions: list[str] = []
    main = pg_db.engine.sync_engine

    def on_begin(_connection: Any) -> None:
        main_transactions.append("BEGIN")

    def on_commit(_connection: Any) -> None:
        main_transactions.append("COMMIT")

    event.listen(main, "begin", on_begin)
    event.listen(main, "commit", on_commit)
    try:
        with statements(pg_db) as on_main, statements(pg_db, quick=True) as on_quick:
            await _GroupCommit(pg_db).record([Sent(i, f"tg-{i}", now, "telegram") for i in ids])
    finally:
        event.remove(main, "begin", on_begin)
        event.remove(main, "commit", on_commit)
    assert (main_transactions, on_main) == ([], [])
    assert [s.split()[0] for s in on_quick] == ["UPDATE"]
    stored = {m.id: m for m in await rows(pg_db, OutboundMessage)}
    for i in ids:
        row = stored[i]
        assert (row.status, row.provider_id, row.sent_at) == ("sent", f"tg-{i}", now)


async def test_on_postgresql_a_refused_mark_fails_every_send_of_its_statement(
    pg_db: Database, now: datetime
) -> None:
    """The marks on the quick pool, and the database refuses the last outcome of a batch:
    every caller in that batch is told, and none of its rows is marked sent, not even
    those updated before the refusal (the ``executemany`` is atomic without a BEGIN)."""
    ids = await _queued_ids(pg_db, now)
    refused = ids[-1]
    async with pg_db.engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE FUNCTION refuse_sent() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
        )
        await connection.exec_driver_sql(
            "CREATE TRIGGER refuse_sent BEFORE UPDATE ON outbound_message FOR EACH ROW "
            f"WHEN (NEW.id = {refused}) EXECUTE FUNCTION refuse_sent()"
        )
    try:
        marks = _GroupCommit(pg_db)
        with statements(pg_db, quick=True) as on_quick:
            outcomes = await asyncio.gather(
                *(marks.record([Sent(i, f"tg-{i}", now)]) for i in ids), return_exceptions=True
            )
    finally:
        async with pg_db.engine.begin() as connection:  # the database is the module's
            await connection.exec_driver_sql("DROP TRIGGER refuse_sent ON outbound_message")
            await connection.exec_driver_sql("DROP FUNCTION refuse_sent()")
    failed = {i for i, outcome in zip(ids, outcomes, strict=True) if isinstance(outcome, Exception)}
    assert refused in failed and len(failed) > 1  # a batch of several, all told
    status = {m.id: m.status for m in await rows(pg_db, OutboundMessage)}
    assert {i: status[i] for i in ids} == {i: "queued" if i in failed else "sent" for i in ids}
    assert on_quick and {s.split()[0] for s in on_quick} == {"UPDATE"}
