"""A recipient's messages claimed together (a line) are sent one after the other, in order,
and a message to be retried holds back the rest of its line.

The real python-telegram-bot client sends to the Bot API stand-in; no pacer, so only the
line keeps a chat's order (sixteen sends may be in flight at once).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import select

from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.sending import Report
from bot.channels.telegram import TelegramChannel
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from tests.standins.server import Fault, serve
from tests.standins.telegram import TelegramStandIn, server_error
from tests.test_delivery_pump import arrivals, message
from tests.test_services import SimClock

LEASE = timedelta(seconds=30)
CHAT_A, CHAT_B = 620_001, 620_002


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


async def queue(db: Database, clock: SimClock, chat: int, recipient: int, n: int) -> None:
    rows = [
        message("patient", recipient, chat, f"{chat}:{i}", outbox.REPLY, clock.now)
        for i in range(n)
    ]
    async with db.transaction() as session:
        await Repository(session).enqueue(rows)


async def test_a_slow_first_message_is_not_overtaken_by_the_rest_of_its_line(
    db: Database,
) -> None:
    """Five messages to one chat leave from one claim; the first is answered 0.3 s late,
    and the other four still arrive after it, in order (sent at once, they would not)."""
    clock = SimClock()
    await queue(db, clock, CHAT_A, 1, 5)
    stand_in = TelegramStandIn()
    stand_in.fail(Fault(delay_s=0.3), method="sendMessage", chat_id=CHAT_A)
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=5)
        try:
            report = await Deliverer(db, {"telegram": channel}, clock, lease=LEASE).drain()
        finally:
            await channel.close()
    assert report.sent == 5
    assert arrivals(stand_in) == [f"{CHAT_A}:{i}" for i in range(5)]


async def test_a_message_to_retry_holds_back_the_rest_of_its_line(db: Database) -> None:
    """The first of a chat's three messages fails (5xx): the other two are not sent, while
    another chat's message goes, and the two are handed back. Once the retry is due (well
    before the claim's lease would end), the three leave together, in order, the two held
    back on their first attempt."""
    clock = SimClock()
    await queue(db, clock, CHAT_A, 1, 3)
    await queue(db, clock, CHAT_B, 2, 1)
    stand_in = TelegramStandIn()
    stand_in.fail(server_error(), method="sendMessage", chat_id=CHAT_A)
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=5)
        deliverer = Deliverer(db, {"telegram": channel}, clock, lease=LEASE)
        try:
            first = await deliverer.drain()
            assert (first.sent, first.retried) == (1, 1)
            assert stand_in.sent_texts(CHAT_A) == []  # its first failed, the rest waited
            assert stand_in.sent_texts(CHAT_B) == [f"{CHAT_B}:0"]
            clock.now += timedelta(seconds=2)  # the retry is due; the lease is not over
            second = await deliverer.drain()
        finally:
            await channel.close()
    assert (second.sent, second.retried) == (3, 0)
    assert stand_in.sent_texts(CHAT_A) == [f"{CHAT_A}:{i}" for i in range(3)]
    assert len(arrivals(stand_in)) == 5  # one failed attempt, four messages
    async with db.transaction() as session:
        attempts = await session.exec(select(OutboundMessage.attempts).order_by(OutboundMessage.id))
        assert list(attempts.all()) == [2, 1, 1, 1]


@contextmanager
def transactions(db: Database) -> Iterator[list[list[tuple[str, int]]]]:
    """The statements of each transaction committed inside the block, one list each: each
    statement with the number of parameter sets it ran with (``executemany``: several).
    On PostgreSQL a statement of `Database.quick()` is a transaction of its own."""
    committed: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []

    def statement(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        current.append((sql, len(params) if many else 1))

    def alone(_conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        committed.append([(sql, len(params) if many else 1)])

    def commit(_conn: Any) -> None:
        committed.append(current[:])
        current.clear()

    engine = db.engine.sync_engine
    quick = db.quick_engine.sync_engine if db.dialect == "postgresql" else None
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    if quick is not None:
        event.listen(quick, "before_cursor_execute", alone)
    try:
        yield committed
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
        if quick is not None:
            event.remove(quick, "before_cursor_execute", alone)


def marked_sent(transaction: list[tuple[str, int]]) -> int:
    """How many rows the transaction marked sent."""
    return sum(
        rows
        for sql, rows in transaction
        if sql.startswith("UPDATE outbound_message") and "sent_at" in sql
    )


async def drain_counting(
    db: Database, stand_in: TelegramStandIn, clock: SimClock
) -> tuple[Report, list[list[tuple[str, int]]]]:
    """One drain through the real client; its report and the statements of each commit."""
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=5)
        try:
            with transactions(db) as committed:
                report = await Deliverer(db, {"telegram": channel}, clock, lease=LEASE).drain()
        finally:
            await channel.close()
    return report, committed


async def test_a_lines_sends_are_recorded_in_one_transaction(db: Database) -> None:
    """Three messages to one chat: each leaves once the one before is answered, and the
    three are marked sent together, in one transaction, once the last is answered."""
    clock = SimClock()
    await queue(db, clock, CHAT_A, 1, 3)
    stand_in = TelegramStandIn()
    report, committed = await drain_counting(db, stand_in, clock)
    assert report.sent == 3
    assert arrivals(stand_in) == [f"{CHAT_A}:{i}" for i in range(3)]
    assert [marked_sent(t) for t in committed if marked_sent(t)] == [3]
    async with db.transaction() as session:
        stored = (await session.exec(select(OutboundMessage).order_by(OutboundMessage.id))).all()
    assert [m.status for m in stored] == ["sent"] * 3
    assert len({m.provider_id for m in stored}) == 3


async def test_a_slow_next_send_does_not_hold_back_the_record_of_the_last(
    db: Database,
) -> None:
    """The second of two messages is answered 1.5 s late: the first is recorded alone
    meanwhile (a crash while the provider is slow would send it again), not with it."""
    clock = SimClock()
    await queue(db, clock, CHAT_A, 1, 2)
    stand_in = TelegramStandIn()
    stand_in.fail(Fault(), method="sendMessage", chat_id=CHAT_A)  # answered at once
    stand_in.fail(Fault(delay_s=1.5), method="sendMessage", chat_id=CHAT_A)
    report, committed = await drain_counting(db, stand_in, clock)
    assert report.sent == 2
    assert arrivals(stand_in) == [f"{CHAT_A}:{i}" for i in range(2)]
    assert [marked_sent(t) for t in committed if marked_sent(t)] == [1, 1]


async def test_a_line_not_recorded_is_sent_again_whole_and_in_order(sqlite_db: Database) -> None:
    """The database refuses to mark the line sent: none of its messages is recorded, their
    leases stay, and once the leases are over the line leaves again, in order (at least
    once: the chat sees it twice)."""
    clock = SimClock()
    await queue(sqlite_db, clock, CHAT_A, 1, 2)
    async with sqlite_db.engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE TRIGGER refuse_sent BEFORE UPDATE OF sent_at ON outbound_message "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    stand_in = TelegramStandIn()
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=5)
        deliverer = Deliverer(sqlite_db, {"telegram": channel}, clock, lease=LEASE)
        try:
            first = await deliverer.drain()
            async with sqlite_db.transaction() as session:
                held = (await session.exec(select(OutboundMessage.status))).all()
            assert list(held) == ["sending", "sending"]
            async with sqlite_db.engine.begin() as connection:
                await connection.execute(text("DROP TRIGGER refuse_sent"))
            clock.now += LEASE
            second = await deliverer.drain()
        finally:
            await channel.close()
    assert first.sent == 0  # the line's report is lost with its record
    assert second.sent == 2
    assert arrivals(stand_in) == [f"{CHAT_A}:{i}" for i in (0, 1, 0, 1)]
