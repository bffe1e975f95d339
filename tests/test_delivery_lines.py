"""A recipient's messages claimed together (a line) are sent one after the other, in order,
and a message to be retried holds back the rest of its line.

The real python-telegram-bot client sends to the Bot API stand-in; no pacer, so only the
line keeps a chat's order (sixteen sends may be in flight at once).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot.app.outbox.delivery import Deliverer
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
