"""Outbox delivery through the real python-telegram-bot client to a Bot API stand-in:
outages delay messages, never drop them; order per patient holds; permanent errors stop."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.sending import Report, RetryPolicy
from bot.channels.telegram import TelegramChannel
from bot.rendering.renderer import Renderer
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import OutboundMessage, Patient
from tests.standins.limited_wave import queue_reminders
from tests.standins.server import Fault, serve
from tests.standins.telegram import TelegramStandIn, blocked, flood, server_error
from tests.test_services import CATALOG, CLINIC, SimClock, rows, wire

CHATS = (4101, 4102)


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


async def telegram_patients(db: Database) -> list[int]:
    ids = []
    async with db.transaction() as session:
        for chat in CHATS:
            patient = Patient(
                display_name="Pat",
                timezone="UTC",
                channel="telegram",
                address=str(chat),
                status="active",
            )
            await Repository(session).add(patient)
            ids.append(patient.id)
    return ids


async def with_reminders(db: Database, patient_ids: list[int], at: datetime) -> None:
    """Each patient's first question asked again as a reminder, queued behind the opening:
    two messages a chat, so that their order can show."""
    await queue_reminders(db, Renderer(CATALOG, CLINIC), at, patient_ids)


async def deliver_until_quiet(deliverer: Deliverer, clock: SimClock, rounds: int = 40) -> Report:
    """Run the delivery loop like the scheduler would, with time passing between ticks."""
    total = Report()
    for _ in range(rounds):
        total += await deliverer.run_once()
        clock.now += timedelta(minutes=20)  # longer than any backoff
    return total


async def test_outage_delays_but_never_drops_and_keeps_order(db: Database) -> None:
    """5xx, a flood limit, a timeout and a dropped connection: everything arrives, in order."""
    stand_in = TelegramStandIn()
    w = wire(db)
    patients = await telegram_patients(db)
    for patient_id in patients:
        await w.services.asking.ask(patient_id, ["phq2"])
        await w.services.asking.ask(patient_id, ["gad7"], due_at=w.clock.now)
    await w.services.starting.start_due()
    await with_reminders(db, patients, w.clock.now)
    expected = {
        chat: [m.body for m in await rows(db, OutboundMessage) if m.address == str(chat)]
        for chat in CHATS
    }
    stand_in.fail(server_error(502), method="sendMessage", chat_id=CHATS[0], times=3)
    stand_in.fail(flood(2), method="sendMessage", chat_id=CHATS[1])
    stand_in.fail(Fault.slow(1.5), method="sendMessage", chat_id=CHATS[1])
    stand_in.fail(Fault.dropped(), method="sendMessage", chat_id=CHATS[0])
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=0.5)
        deliverer = Deliverer(db, {"telegram": channel}, w.clock, RetryPolicy(base_s=1))
        try:
            report = await deliver_until_quiet(deliverer, w.clock)
        finally:
            await channel.close()
    assert report.dead == 0 and report.retried >= 5
    outbox = await rows(db, OutboundMessage)
    assert {m.status for m in outbox} == {"sent"}
    for chat in CHATS:
        delivered = _without_repeats(stand_in.sent_texts(chat))
        assert len(delivered) == len(expected[chat]) == 2  # the opening, then the reminder
        assert [t.splitlines()[0] for t in delivered] == [
            _plain(b).splitlines()[0] for b in expected[chat]
        ]


async def test_retry_after_is_honoured(db: Database) -> None:
    """After a 429 with retry_after 30 s, the message is not tried again before 30 s pass."""
    stand_in = TelegramStandIn()
    w = wire(db)
    patient_id = (await telegram_patients(db))[0]
    await w.services.asking.ask(patient_id, ["phq2"])
    await w.services.starting.start_due()
    stand_in.fail(flood(30), method="sendMessage")
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=2)
        deliverer = Deliverer(db, {"telegram": channel}, w.clock, RetryPolicy(base_s=1))
        try:
            assert await deliverer.run_once() == Report(retried=1)
            w.clock.now += timedelta(seconds=29)
            assert await deliverer.run_once() == Report()
            w.clock.now += timedelta(seconds=2)
            assert (await deliverer.run_once()).sent == 1
        finally:
            await channel.close()
    assert len(stand_in.calls_to("sendMessage")) == 2


async def test_blocked_patient_is_not_retried(db: Database) -> None:
    """A 403 (the patient blocked the bot) marks the message dead after one attempt."""
    stand_in = TelegramStandIn()
    w = wire(db)
    patient_id = (await telegram_patients(db))[0]
    await w.services.asking.ask(patient_id, ["phq2"])
    await w.services.starting.start_due()
    await with_reminders(db, [patient_id], w.clock.now)
    stand_in.fail(blocked(), method="sendMessage", times=5)
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=2)
        deliverer = Deliverer(db, {"telegram": channel}, w.clock)
        try:
            report = await deliver_until_quiet(deliverer, w.clock, rounds=5)
        finally:
            await channel.close()
    assert report == Report(dead=2)
    assert len(stand_in.calls_to("sendMessage")) == 2
    assert {m.last_error for m in await rows(db, OutboundMessage)} == {
        "telegram: forbidden (bot blocked by the user)"
    }


async def test_a_bad_chat_address_is_dead_with_a_reason_and_holds_up_nothing(
    db: Database,
) -> None:
    """A Telegram address that is no chat id marks each message dead with a reason, one
    attempt each, instead of re-sending the first one forever after each lease."""
    stand_in = TelegramStandIn()
    w = wire(db)
    patient_id = (await telegram_patients(db))[0]
    async with db.transaction() as session:
        patient = await Repository(session).get_patient(patient_id)
        assert patient is not None
        patient.address = "not-a-chat"
        await Repository(session).add(patient)
    await w.services.asking.ask(patient_id, ["phq2"])
    await w.services.starting.start_due()
    await with_reminders(db, [patient_id], w.clock.now)
    queued = len(await rows(db, OutboundMessage))
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=2)
        deliverer = Deliverer(db, {"telegram": channel}, w.clock)
        try:
            report = await deliver_until_quiet(deliverer, w.clock, rounds=queued + 1)
        finally:
            await channel.close()
    outbox = await rows(db, OutboundMessage)
    assert report == Report(dead=queued) and queued >= 2
    assert {(m.status, m.attempts, m.last_error) for m in outbox} == {
        ("dead", 1, "telegram: the address is not a chat id")
    }


class _BrokenForOne:
    """A channel with a bug for one recipient: it raises something it never translated."""

    name = "telegram"

    def __init__(self, broken: str) -> None:
        self.broken = broken
        self.sent: list[str] = []

    async def send(self, address: str, message: object, payload: dict[str, object]) -> str:
        if address == self.broken:
            raise KeyError("a bug")
        self.sent.append(address)
        return str(len(self.sent))


async def test_an_untranslated_channel_error_is_dead_not_retried_forever(db: Database) -> None:
    """An exception the channel did not translate marks that message dead ("unexpected
    error"), once; the recipient's next message and everyone else's go on."""
    w = wire(db)
    first, second = await telegram_patients(db)
    async with db.transaction() as session:
        for n in range(2):
            for patient_id in (first, second):
                await Repository(session).enqueue([
                    OutboundMessage(
                        channel="telegram",
                        recipient_kind="patient",
                        recipient_id=patient_id,
                        address=str(CHATS[0] if patient_id == first else CHATS[1]),
                        body=f"message {n}",
                        payload={},
                        idempotency_key=f"test:{patient_id}:{n}",
                        next_attempt_at=w.clock.now,
                    )
                ])  # fmt: skip
    channel = _BrokenForOne(str(CHATS[0]))
    deliverer = Deliverer(db, {"telegram": channel}, w.clock)  # type: ignore[dict-item]
    report = await deliver_until_quiet(deliverer, w.clock, rounds=3)
    assert report == Report(sent=2, dead=2)
    assert channel.sent == [str(CHATS[1])] * 2
    outbox = await rows(db, OutboundMessage, OutboundMessage.recipient_id == first)
    assert {(m.status, m.attempts, m.last_error) for m in outbox} == {
        ("dead", 1, "unexpected error (KeyError)")
    }


def _plain(html: str) -> str:
    for tag in ("<b>", "</b>", "<i>", "</i>"):
        html = html.replace(tag, "")
    return html.replace("&amp;", "&")


def _without_repeats(texts: list[str]) -> list[str]:
    """First arrivals only. A message the provider took after the client had timed out is
    sent again, and the late original can land after later messages: Telegram has no
    idempotency key, so delivery is at least once and the first arrivals are what keep order."""
    return list(dict.fromkeys(texts))


def test_retry_policy_backs_off_and_respects_retry_after() -> None:
    """Backoff doubles from the base up to the cap; a longer Retry-After wins."""
    policy = RetryPolicy(base_s=2, cap_s=60)
    assert [policy.delay(n, None).total_seconds() for n in (1, 2, 3, 6, 10)] == [2, 4, 8, 60, 60]
    assert policy.delay(1, 45).total_seconds() == 45


async def test_provider_requests_do_not_pay_for_a_failed_import_each() -> None:
    """httpcore asks sniffio which event loop runs on every request; without sniffio
    installed, each request costs a failed import (a search of sys.path)."""
    import sys

    import httpcore._synchronization as sync

    assert sync.current_async_library() == "asyncio"  # imports sniffio if it can
    assert "sniffio" in sys.modules
