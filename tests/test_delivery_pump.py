"""A drain claims again while it sends: urgent messages never wait for a paced batch.

The real python-telegram-bot client sends to the Bot API stand-in, paced at 20 messages a
second overall and one a second per chat, as `checkin run` paces Telegram. A hundred
routine messages to different chats take five seconds to leave; a clinician's alerts, one
after another in the clinician's own line, must not each wait for those five seconds.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.pacing import Pacer
from bot.channels.telegram import TelegramChannel
from bot.storage import outbox
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from tests.standins.server import Fault, serve
from tests.standins.telegram import TelegramStandIn
from tests.test_services import SimClock

ROUTINE_CHAT0 = 610_000
CLINICIAN_CHAT = 690_001
ROUTINE = 100
ALERTS = 3


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


def message(
    kind: str, recipient: int, chat: int, text: str, priority: int, now: datetime
) -> OutboundMessage:
    return OutboundMessage(
        channel="telegram",
        recipient_kind=kind,
        recipient_id=recipient,
        address=str(chat),
        body=text,
        payload={},
        idempotency_key=text,
        next_attempt_at=now,
        priority=priority,
    )


async def queue_routine(db: Database, now: datetime) -> None:
    rows = [
        message("patient", n + 1, ROUTINE_CHAT0 + n, f"routine {n}", outbox.ROUTINE, now)
        for n in range(ROUTINE)
    ]
    async with db.transaction() as session:
        await Repository(session).enqueue(rows)


async def queue_alerts(db: Database, now: datetime) -> None:
    rows = [
        message("clinician", 1, CLINICIAN_CHAT, f"alert {n}", outbox.URGENT, now)
        for n in range(ALERTS)
    ]
    async with db.transaction() as session:
        await Repository(session).enqueue(rows)


def arrivals(stand_in: TelegramStandIn) -> list[str]:
    return [str(c.params.get("text")) for c in stand_in.calls_to("sendMessage")]


def paced(
    db: Database, url: str, stand_in: TelegramStandIn, clock: SimClock
) -> tuple[Deliverer, TelegramChannel]:
    channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=5)
    pacer = Pacer(rate_per_s=20, per_chat_rate_per_s=1.0)
    return Deliverer(db, {"telegram": channel}, clock, pacers={"telegram": pacer}), channel


async def test_a_clinicians_alerts_follow_each_other_not_the_batch(db: Database) -> None:
    """Alerts queued before the drain: the first goes first (most urgent), and each next
    one is claimed as soon as the one before it is sent, a second apart (the chat's gap),
    not after the hundred routine messages claimed with the first."""
    clock = SimClock()
    await queue_routine(db, clock.now)
    await queue_alerts(db, clock.now)
    stand_in = TelegramStandIn()
    async with serve(stand_in.app) as url:
        sender, channel = paced(db, url, stand_in, clock)
        try:
            report = await sender.drain()
        finally:
            await channel.close()
    order = arrivals(stand_in)
    assert report.sent == ROUTINE + ALERTS and len(order) == ROUTINE + ALERTS
    assert order[0] == "alert 0"
    alerts = [order.index(f"alert {n}") for n in range(ALERTS)]
    assert alerts == sorted(alerts)  # the clinician's own order holds
    # a second apart at 20 a second: the last alert about 40 sends in, well before the
    # last of the batch; waiting for the batch would put each alert after all 100
    assert alerts[-1] < ROUTINE * 3 // 4, order


async def test_a_message_queued_mid_drain_is_claimed_on_wake(db: Database) -> None:
    """An alert committed while a paced drain is sending (the webhook sets `wake`) is
    claimed by that drain at once and sent next, ahead of the routine messages already
    claimed and still waiting for their slots."""
    clock = SimClock()
    await queue_routine(db, clock.now)
    stand_in = TelegramStandIn()
    wake = asyncio.Event()
    async with serve(stand_in.app) as url:
        sender, channel = paced(db, url, stand_in, clock)
        try:
            draining = asyncio.create_task(sender.drain(wake))
            async with asyncio.timeout(30):
                while len(arrivals(stand_in)) < 10 and not draining.done():
                    await asyncio.sleep(0.01)
            sent_before = len(arrivals(stand_in))
            await queue_alerts(db, clock.now)
            wake.set()
            report = await asyncio.wait_for(draining, timeout=60)
        finally:
            await channel.close()
    order = arrivals(stand_in)
    assert report.sent == ROUTINE + ALERTS
    first_alert = order.index("alert 0")
    # the next free slot or two (a slot may already be promised when the alert lands)
    assert first_alert <= sent_before + 3, order
    alerts = [order.index(f"alert {n}") for n in range(ALERTS)]
    assert alerts == sorted(alerts) and alerts[-1] < ROUTINE * 3 // 4, order
    assert not wake.is_set()  # what it announced was claimed


async def test_a_drain_ends_when_nothing_is_due(db: Database) -> None:
    """With nothing queued the drain claims once and returns; with everything sent it
    returns too (the pump does not spin)."""
    clock = SimClock()
    stand_in = TelegramStandIn()
    async with serve(stand_in.app) as url:
        sender, channel = paced(db, url, stand_in, clock)
        try:
            assert (await asyncio.wait_for(sender.drain(asyncio.Event()), 10)).sent == 0
            await queue_alerts(db, clock.now)
            assert (await asyncio.wait_for(sender.drain(), 30)).sent == ALERTS
            assert (await asyncio.wait_for(sender.drain(), 10)).sent == 0
        finally:
            await channel.close()
    assert arrivals(stand_in) == [f"alert {n}" for n in range(ALERTS)]


async def test_a_slow_send_keeps_its_lease_and_is_not_sent_twice(db: Database) -> None:
    """Two workers and a provider answering after 1.5 s, with a 0.6 s lease: the worker
    sending renews its leases every 0.2 s, so the other finds nothing to take over, and
    each message reaches the provider once. (Without renewal the second worker claims
    them again once the lease runs out and sends them a second time.)"""
    stand_in = TelegramStandIn()
    now = datetime.now(UTC)
    rows = [message("patient", n + 1, ROUTINE_CHAT0 + n, f"slow {n}", outbox.ROUTINE, now)
            for n in range(3)]  # fmt: skip
    async with db.transaction() as session:
        await Repository(session).enqueue(rows)
    for n in range(3):
        stand_in.fail(Fault.slow(1.5), method="sendMessage", chat_id=ROUTINE_CHAT0 + n)
    async with serve(stand_in.app) as url:
        channels = [
            TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=5)
            for _ in range(2)
        ]
        first, second = (
            Deliverer(db, {"telegram": c}, lambda: datetime.now(UTC), lease=timedelta(seconds=0.6))
            for c in channels
        )
        try:
            sending = asyncio.create_task(first.drain())
            await asyncio.sleep(0.9)  # past the lease the messages were claimed with
            taken_over = await second.drain()
            assert (await sending).sent == 3
        finally:
            for channel in channels:
                await channel.close()
    assert taken_over.sent == 0
    assert sorted(arrivals(stand_in)) == [f"slow {n}" for n in range(3)]


async def test_a_send_waiting_to_record_its_outcome_leaves_the_provider_to_the_next(
    db: Database,
) -> None:
    """One provider call at a time (`concurrency` 1). The first message's provider answers
    late with an error, and recording that outcome waits for the database (another
    transaction holds it); the second message is sent meanwhile: the place is for the
    provider call, not for the bookkeeping after it. (Sixteen sends waiting so had once
    held every place while fifty crisis messages waited.)"""
    clock = SimClock()
    rows = [message("patient", n, 620_000 + n, f"m{n}", outbox.REPLY, clock.now) for n in (1, 2)]
    async with db.transaction() as session:
        await Repository(session).enqueue(rows)
    stand_in = TelegramStandIn()
    stand_in.faults.add(Fault(status=500, delay_s=0.5), method="sendMessage", key="620001", times=1)
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=5)
        sender = Deliverer(db, {"telegram": channel}, clock, concurrency=1)
        try:
            draining = asyncio.create_task(sender.drain())
            async with asyncio.timeout(10):
                while not stand_in.calls_to("sendMessage"):
                    await asyncio.sleep(0.01)
            async with db.transaction() as session:  # the database busy elsewhere
                await hold_row(session, db, "m1")
                async with asyncio.timeout(3):
                    while len(arrivals(stand_in)) < 2:
                        await asyncio.sleep(0.01)
            report = await asyncio.wait_for(draining, timeout=30)
        finally:
            await channel.close()
    assert arrivals(stand_in) == ["m1", "m2"]
    assert (report.sent, report.retried) == (1, 1)


async def hold_row(session: AsyncSession, db: Database, key: str) -> None:
    """Lock the outbox row `key` until the transaction ends (on SQLite: every write)."""
    statement = select(OutboundMessage).where(OutboundMessage.idempotency_key == key)
    if db.dialect == "postgresql":
        statement = statement.with_for_update()
    row = (await session.exec(statement)).one()
    row.last_error = row.last_error  # (a write: SQLite's one writer is now this transaction)
    session.add(row)
    await session.flush()
