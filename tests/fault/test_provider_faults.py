"""Provider faults at the level of the real clients: python-telegram-bot and twilio's own
client against the stand-ins, the outbox and the deliverer on a real database and the wall
clock. 5xx, timeouts, dropped connections and 429s delay messages but never lose them; the
gap after a 429 is at least its Retry-After, measured at the stand-in; permanent errors
(Telegram 400 and 403, Twilio 400 / 21211 and 21610) are tried once and never again.
tests/test_delivery.py covers Telegram on a simulated clock; this adds Twilio, the wall
clock and the permanent 400s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from twilio.rest import Client

from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.sending import RetryPolicy
from bot.channels.sms import SmsChannel
from bot.channels.telegram import TelegramChannel
from bot.channels.twilio_http import BaseUrlHttpClient
from bot.config import Sms
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage
from tests.standins import telegram as tg
from tests.standins import twilio as tw
from tests.standins.server import Fault, serve
from tests.test_services import rows

pytestmark = pytest.mark.fault

CHAT, PHONE, OTHER_PHONE = "4201", "+15555550142", "+15555550143"
CLIENT_TIMEOUT_S = 0.5


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Rig:
    db: Database
    telegram: tg.TelegramStandIn
    twilio: tw.TwilioStandIn
    deliverer: Deliverer

    async def queue(self, channel: str, address: str, *bodies: str) -> None:
        async with self.db.transaction() as session:
            await Repository(session).enqueue([
                OutboundMessage(
                    channel=channel, recipient_kind="patient", recipient_id=0, address=address,
                    body=body, payload={}, idempotency_key=f"{address}:{body}",
                    next_attempt_at=now(),
                )
                for body in bodies
            ])  # fmt: skip

    async def deliver_until_settled(self, timeout_s: float = 20.0) -> list[OutboundMessage]:
        """Run the delivery loop on the wall clock until every message is sent or dead."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self.deliverer.run_once()
            outbox = await rows(self.db, OutboundMessage)
            if all(m.status in ("sent", "dead") for m in outbox):
                return outbox
            await asyncio.sleep(0.05)
        raise AssertionError("messages still queued after the deadline")


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    telegram, twilio = tg.TelegramStandIn(), tw.TwilioStandIn()
    async with serve(telegram.app) as tg_url, serve(twilio.app) as sms_url:
        bot = TelegramChannel(telegram.token, f"{tg_url}/bot", timeout_s=CLIENT_TIMEOUT_S)
        settings = Sms(twilio.account_sid, twilio.auth_token, "+15555550100", api_base_url=sms_url)
        sms = SmsChannel(settings)
        # A shorter timeout than the 10 s default, so a slow answer times out quickly.
        sms._http = BaseUrlHttpClient(sms_url, timeout_s=CLIENT_TIMEOUT_S)
        sms._client = Client(settings.account_sid, settings.auth_token, http_client=sms._http)
        channels = {"telegram": bot, "sms": sms}
        deliverer = Deliverer(
            db, channels, now, RetryPolicy(base_s=0.1, cap_s=1.0, maybe_sent_s=0.2)
        )
        try:
            yield Rig(db, telegram, twilio, deliverer)
        finally:
            await bot.close()
            sms.close()


async def test_transient_faults_delay_but_never_lose(rig: Rig) -> None:
    """5xx, a timeout, a dropped connection and a 429 on each provider: all arrive, in order."""
    for fault in (tg.server_error(502), tg.server_error(500), Fault.slow(1.5), Fault.dropped(),
                  tg.flood(1)):  # fmt: skip
        rig.telegram.fail(fault, method="sendMessage")
    for fault in (tw.server_error(503), tw.server_error(500), Fault.slow(1.5), Fault.dropped(),
                  tw.too_many_requests(1)):  # fmt: skip
        rig.twilio.fail(fault)
    await rig.queue("telegram", CHAT, "first", "second")
    await rig.queue("sms", PHONE, "first", "second")
    outbox = await rig.deliver_until_settled()
    assert {m.status for m in outbox} == {"sent"}
    assert min(m.attempts for m in outbox) >= 1 and max(m.attempts for m in outbox) >= 5
    telegram = [m["text"] for m in rig.telegram.messages(int(CHAT))]
    sms = [m["body"] for m in rig.twilio.messages.values() if m["to"] == PHONE]
    for arrived in (telegram, sms):  # a timed-out send may land twice: at least once, in order
        assert list(dict.fromkeys(arrived)) == ["first", "second"]
    assert rig.telegram.faults.pending() == rig.twilio.faults.pending() == 0


async def test_retry_after_is_honoured_on_the_wall_clock(rig: Rig) -> None:
    """The next try after a 429 with Retry-After 2 s comes 2 s later or more (not much more)."""
    rig.telegram.fail(tg.flood(2), method="sendMessage")
    rig.twilio.fail(tw.too_many_requests(2))
    await rig.queue("telegram", CHAT, "hello")
    await rig.queue("sms", PHONE, "hello")
    await rig.deliver_until_settled()
    for calls in (rig.telegram.calls_to("sendMessage"), rig.twilio.calls):
        assert [c.fault is not None for c in calls] == [True, False]
        gap_s = (calls[1].at - calls[0].at).total_seconds()
        assert 2.0 <= gap_s < 3.5, gap_s


async def test_permanent_errors_are_tried_once(rig: Rig) -> None:
    """Telegram 400 (chat not found) and 403 (blocked), Twilio 21211 and 21610: one try each."""
    rig.telegram.fail(tg.chat_not_found(), method="sendMessage", chat_id=CHAT, times=10)
    rig.telegram.block(4202)
    rig.twilio.fail(tw.invalid_to(), to=PHONE, times=10)
    rig.twilio.opt_out(OTHER_PHONE)
    await rig.queue("telegram", CHAT, "to a chat that does not exist")
    await rig.queue("telegram", "4202", "to a patient who blocked the bot")
    await rig.queue("sms", PHONE, "to an invalid number")
    await rig.queue("sms", OTHER_PHONE, "to a number that replied STOP")
    outbox = await rig.deliver_until_settled()
    for _ in range(5):  # later rounds find nothing to try again
        await rig.deliverer.run_once()
        await asyncio.sleep(0.1)
    assert [(m.status, m.attempts) for m in outbox] == [("dead", 1)] * 4
    assert len(rig.telegram.calls_to("sendMessage")) == 2 and len(rig.twilio.calls) == 2
    assert sorted(m.last_error or "" for m in outbox) == [
        "sms: twilio error 21211",
        "sms: twilio error 21610 (recipient opted out)",
        "telegram: bad request (chat not found)",
        "telegram: forbidden (bot blocked by the user)",
    ]
